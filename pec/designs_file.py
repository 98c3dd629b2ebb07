"""Designs files: `[{"id": 0, "GCR": 0.82, "spcf": 0.005}, ...]`, validated on read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from pec.design_space import DesignSpace
from pec.errors import InputError


class Design(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    GCR: float
    spcf: float


def parse_designs(data: object, source: str, space: DesignSpace | None = None) -> list[Design]:
    if not isinstance(data, list) or not data:
        raise InputError(
            f'{source}: expected a non-empty JSON list of {{"id", "GCR", "spcf"}} objects'
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
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"designs file '{path}' does not exist") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"designs file '{path}' is not valid JSON (line {exc.lineno}); fix it"
        ) from None
    return parse_designs(data, f"designs file '{path}'", space)


def uniform_designs(space: DesignSpace, n: int, seed: int) -> list[Design]:
    if n < 1:
        raise InputError(f"--n {n}: need at least one design")
    points = space.sample_uniform(n, np.random.default_rng(seed))
    return [Design(id=i, GCR=float(p[0]), spcf=float(p[1])) for i, p in enumerate(points)]


def dump_designs(designs: list[Design]) -> bytes:
    return json.dumps([d.model_dump() for d in designs], indent=1).encode()
