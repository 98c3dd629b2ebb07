"""The obstacle curriculum: 75 integer levels and the per-episode level rule.

Levels are kept as integers throughout (the original recovered them from float
positions and could be off by one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pec.errors import InputError

NUM_LEVELS: int = 75
MAX_LEVEL: int = NUM_LEVELS - 1
BASE_HEIGHT: float = 0.001
HEIGHT_STEP: float = 0.010


@overload
def level_height(level: int) -> float: ...
@overload
def level_height(level: NDArray[np.integer]) -> NDArray[np.float64]: ...
def level_height(level: int | NDArray[np.integer]) -> float | NDArray[np.float64]:
    """Obstacle height in metres for a level: 0.001 + 0.010 x L."""
    array = np.asarray(level)
    if array.size and (np.any(array < 0) or np.any(array > MAX_LEVEL)):
        raise InputError(f"level {level!r} is outside [0, {MAX_LEVEL}]; clip the level first")
    heights = BASE_HEIGHT + HEIGHT_STEP * array.astype(np.float64)
    if array.ndim == 0:
        return float(heights)
    result: NDArray[np.float64] = heights
    return result


def next_levels(
    levels: ArrayLike,
    root_x: ArrayLike,
    promote_x: float = 1.0,
    demote_x: float = 0.5,
) -> NDArray[np.int64]:
    """Level after an episode: +1 past promote_x, -1 short of demote_x, clipped to [0, 74].

    A non-finite root_x (a blown-up simulation) counts as neither, so the level stays.
    """
    level_array = np.asarray(levels)
    x_array = np.asarray(root_x, dtype=np.float64)
    if level_array.shape != x_array.shape:
        raise InputError(
            f"levels shape {level_array.shape} != root_x shape {x_array.shape}; "
            "pass one root x per environment"
        )
    if level_array.size and not np.all(np.equal(np.mod(level_array, 1), 0)):
        raise InputError("levels must be whole numbers; keep curriculum levels as integers")
    if not promote_x > demote_x:
        raise InputError(
            f"promote_x={promote_x} must exceed demote_x={demote_x}; fix the level thresholds"
        )
    step = (x_array > promote_x).astype(np.int64) - (x_array < demote_x).astype(np.int64)
    result: NDArray[np.int64] = np.clip(level_array.astype(np.int64) + step, 0, MAX_LEVEL)
    return result


def starting_level(
    previous_scores: Sequence[float] | NDArray[np.floating] | None,
    dl_initial: int,
    dl_buffer: int,
) -> int:
    """Starting obstacle level dl: max(0, floor(mean previous scores) - dl_buffer).

    Falls back to dl_initial when there are no previous scores (iteration 0, or the expert
    could not be evaluated, which arrives as None, empty or all-NaN).
    """
    for name, value in (("dl_initial", dl_initial), ("dl_buffer", dl_buffer)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise InputError(f"{name}={value!r} is invalid; pass an integer >= 0")
    if dl_initial > MAX_LEVEL:
        raise InputError(f"dl_initial={dl_initial} exceeds the top level {MAX_LEVEL}; lower it")
    if previous_scores is None:
        return int(dl_initial)
    scores = np.asarray(previous_scores, dtype=np.float64).reshape(-1)
    if scores.size == 0 or np.all(np.isnan(scores)):
        return int(dl_initial)
    if not np.all(np.isfinite(scores)):
        raise InputError(
            "previous scores mix numbers with NaN/inf; pass all F levels or None for a missing expert"
        )
    return max(0, math.floor(float(np.mean(scores))) - int(dl_buffer))
