"""How much of the design box the experts cover, measured one way everywhere.

The original measured coverage on three different Monte-Carlo point sets (init, refit,
stopping), so the numbers disagreed; here every caller draws the same seeded set.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from pec.errors import InputError
from pec.maths.design_space import DesignSpace, FloatArray, as_gaussians, as_points

COVERAGE_LOG_DENSITY: float = -2.0
"""A design is covered when some expert's log-density exceeds this (the 2-sigma ellipse)."""

COVERAGE_POINTS: int = 10_000


def log_density(points: ArrayLike, mus: ArrayLike, variances: ArrayLike) -> FloatArray:
    """(n, K) unnormalised diagonal-Gaussian log-density, -0.5 Mahalanobis^2, always <= 0.

    No determinant term, so the value reads directly as a distance in standard deviations,
    which is what the coverage threshold and the border band are defined on.
    """
    point_array = as_points("points", points, dim=None)
    mu_array, var_array = as_gaussians(mus, variances)
    d = mu_array.shape[1]
    if point_array.shape[0] == 0:
        point_array = point_array.reshape(0, d)
    if point_array.shape[1] != d:
        raise InputError(
            f"points have {point_array.shape[1]} axes but the experts have {d}; pass designs "
            "of the experts' design space"
        )
    diff = point_array[:, None, :] - mu_array[None, :, :]
    result: FloatArray = -np.sum(diff**2 / (2.0 * var_array[None, :, :]), axis=2)
    return result


def max_log_density(points: ArrayLike, mus: ArrayLike, variances: ArrayLike) -> FloatArray:
    """(n,) best log-density over all experts: how well the closest expert owns each design."""
    result: FloatArray = np.max(log_density(points, mus, variances), axis=1)
    return result


def mc_points(space: DesignSpace, seed: int, n: int = COVERAGE_POINTS) -> FloatArray:
    """The Monte-Carlo point set for coverage: uniform in the box, fixed by ``seed``."""
    return space.sample_uniform(n, np.random.default_rng(seed))


def covered_fraction(points: ArrayLike, mus: ArrayLike, variances: ArrayLike) -> float:
    """Fraction of ``points`` inside some expert's 2-sigma ellipse (ellipsoid in 3-D)."""
    best = max_log_density(points, mus, variances)
    if best.shape[0] == 0:
        return 0.0
    return float(np.mean(best > COVERAGE_LOG_DENSITY))


def coverage(
    mus: ArrayLike,
    variances: ArrayLike,
    space: DesignSpace,
    seed: int = 0,
    n_points: int = COVERAGE_POINTS,
) -> float:
    """Monte-Carlo coverage of the box by the experts' 2-sigma ellipses."""
    return covered_fraction(mc_points(space, seed, n_points), mus, variances)
