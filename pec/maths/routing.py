"""Deployment routing: which expert drives a given design.

Purely geometric (nearest centre in the unit square), so a design never seen in
training still gets an expert without any learned gate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from pec.maths.design_space import DesignSpace, IntArray, as_points


def route(designs: ArrayLike, mus: ArrayLike, space: DesignSpace) -> IntArray:
    """(n,) expert id per design: nearest centre after normalising both axes; ties -> lower id."""
    design_units = space.normalize(as_points("designs", designs))
    center_units = space.normalize(as_points("mus", mus, allow_empty=False))
    distances = np.sum((design_units[:, None, :] - center_units[None, :, :]) ** 2, axis=2)
    result: IntArray = np.argmin(distances, axis=1).astype(np.int64)
    return result
