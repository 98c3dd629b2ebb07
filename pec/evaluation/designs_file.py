"""Designs files: `[{"id": 0, "GCR": 0.82, "spcf": 0.005}, ...]`, validated on read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pec.errors import InputError
from pec.maths.design_space import DesignSpace
from pec.runs.safe_io import parse_json, read_local_file

MAX_DESIGNS = 100_000
"""Most designs one file may hold (each becomes an environment of an evaluation job)."""


class Design(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: int = Field(ge=0, lt=2**53)
    GCR: float
    spcf: float


def parse_designs(data: object, source: str, space: DesignSpace | None = None) -> list[Design]:
    if not isinstance(data, list) or not data:
        raise InputError(
            f'{source}: expected a non-empty JSON list of {{"id", "GCR", "spcf"}} objects'
        )
    if len(data) > MAX_DESIGNS:
        raise InputError(
            f"{source}: {len(data):,} designs; at most {MAX_DESIGNS:,} are evaluated at once, "
            "split the file"
        )
    designs: list[Design] = []
    seen: set[int] = set()
    for index, item in enumerate(data):
        try:
            design = Design.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "entry"
            raise InputError(f"{source}: entry {index}: {field}: {first['msg']}") from None
        if not (math.isfinite(design.GCR) and math.isfinite(design.spcf)):
            raise InputError(
                f"{source}: entry {index} (id {design.id}): GCR and spcf must be finite"
            )
        if design.id in seen:
            raise InputError(
                f"{source}: entry {index}: id {design.id} appears twice; ids must be unique"
            )
        if space is not None and not bool(
            space.contains(np.asarray([[design.GCR, design.spcf]]))[0]
        ):
            raise InputError(
                f"{source}: entry {index} (id {design.id}) = [{design.GCR}, {design.spcf}] lies outside "
                f"the design space GCR {list(space.gcr)}, spcf {list(space.spcf)}"
            )
        seen.add(design.id)
        designs.append(design)
    return designs


def read_designs_file(path: Path, space: DesignSpace | None = None) -> list[Design]:
    source = f"designs file '{path}'"
    data = parse_json(read_local_file(path, source, InputError), source, InputError)
    return parse_designs(data, source, space)


def uniform_designs(space: DesignSpace, n: int, seed: int) -> list[Design]:
    if n < 1 or n > MAX_DESIGNS:
        raise InputError(f"--n {n}: pass a number of designs in 1..{MAX_DESIGNS:,}")
    points = space.sample_uniform(n, np.random.default_rng(seed))
    return [Design(id=i, GCR=float(p[0]), spcf=float(p[1])) for i, p in enumerate(points)]


def dump_designs(designs: list[Design]) -> bytes:
    return json.dumps([d.model_dump() for d in designs], indent=1).encode()
