"""Deployment routing: which expert drives a given design.

Purely geometric (nearest centre in the unit square, or cube in 3-D), so a design never seen in
training still gets an expert without any learned gate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from pec.maths.design_space import DesignSpace, IntArray


def route(designs: ArrayLike, mus: ArrayLike, space: DesignSpace) -> IntArray:
    """(n,) expert id per design: nearest centre after normalising every axis; ties -> lower id."""
    design_units = space.normalize(space.points("designs", designs))
    center_units = space.normalize(space.points("mus", mus, allow_empty=False))
    distances = np.sum((design_units[:, None, :] - center_units[None, :, :]) ** 2, axis=2)
    result: IntArray = np.argmin(distances, axis=1).astype(np.int64)
    return result
