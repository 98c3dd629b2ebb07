"""Designs files: `[{"id": 0, "GCR": 0.82, "spcf": 0.005}, ...]`, validated on read.

A 3-D run's designs also have `"leg"` (leg length, metres): `{"id", "GCR", "spcf", "leg"}`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

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
    leg: float | None = Field(default=None, exclude_if=lambda value: value is None)

    def values(self) -> list[float]:
        """[GCR, spcf] or [GCR, spcf, leg]: the design as a row of the run's design space."""
        return [self.GCR, self.spcf] + ([self.leg] if self.leg is not None else [])


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
        if not all(math.isfinite(v) for v in design.values()):
            names = "GCR and spcf" if design.leg is None else "GCR, spcf and leg"
            raise InputError(f"{source}: entry {index} (id {design.id}): {names} must be finite")
        if index > 0 and (design.leg is None) != (designs[0].leg is None):
            raise InputError(
                f"{source}: entry {index} (id {design.id}) "
                f"{'lacks' if design.leg is None else 'has'} 'leg' unlike entry 0; give every "
                "design the same axes"
            )
        if space is not None and (design.leg is not None) != (space.dim == 3):
            keys = ", ".join(f'"{k}"' for k in space.keys)
            raise InputError(
                f"{source}: entry {index} (id {design.id}) has "
                f"{'a' if design.leg is not None else 'no'} leg length but the run's design "
                f"space is {space.dim}-D; give each design exactly {keys}"
            )
        if design.id in seen:
            raise InputError(
                f"{source}: entry {index}: id {design.id} appears twice; ids must be unique"
            )
        if space is not None and not bool(space.contains(np.asarray([design.values()]))[0]):
            shown = ", ".join(str(v) for v in design.values())
            box = ", ".join(f"{k} {list(b)}" for k, b in zip(space.keys, space.bounds, strict=True))
            raise InputError(
                f"{source}: entry {index} (id {design.id}) = [{shown}] lies outside "
                f"the design space {box}"
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
    return [design_of(i, p) for i, p in enumerate(points)]


def design_of(design_id: int, row: Any) -> Design:
    """A Design from a row [GCR, spcf] or [GCR, spcf, leg]."""
    values = [float(v) for v in row]
    leg = values[2] if len(values) == 3 else None
    return Design(id=design_id, GCR=values[0], spcf=values[1], leg=leg)


def dump_designs(designs: list[Design]) -> bytes:
    return json.dumps([d.model_dump() for d in designs], indent=1).encode()
