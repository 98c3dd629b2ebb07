"""Log-density and Monte-Carlo coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pec.errors import InputError
from pec.maths.coverage import (
    COVERAGE_LOG_DENSITY,
    COVERAGE_POINTS,
    coverage,
    covered_fraction,
    log_density,
    max_log_density,
    mc_points,
)
from pec.maths.design_space import DesignSpace


@pytest.fixture
def unit() -> DesignSpace:
    return DesignSpace(gcr=(0.0, 1.0), spcf=(0.0, 1.0))


def test_constants() -> None:
    assert COVERAGE_LOG_DENSITY == -2.0
    assert COVERAGE_POINTS == 10_000


def test_log_density_hand_values() -> None:
    mus = np.array([[0.0, 0.0], [1.0, 2.0]])
    variances = np.array([[1.0, 4.0], [0.25, 1.0]])
    points = np.array([[0.0, 0.0], [1.0, 2.0], [2.0, 2.0]])
    # expert 0 at (2,2): -(4/2 + 4/8) = -2.5 ; expert 1 at (0,0): -(1/0.5 + 4/2) = -4
    expected = np.array([[0.0, -4.0], [-(1 / 2 + 4 / 8), 0.0], [-2.5, -2.0]])
    np.testing.assert_allclose(log_density(points, mus, variances), expected)
    np.testing.assert_allclose(max_log_density(points, mus, variances), [0.0, 0.0, -2.0])


def test_log_density_rejects_bad_gaussians() -> None:
    with pytest.raises(InputError, match="expert 1"):
        log_density([[0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]])
    with pytest.raises(InputError, match="variances has shape"):
        log_density([[0.0, 0.0]], [[0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]])


def test_threshold_is_strict() -> None:
    # A point exactly on the 2-sigma ellipse (log-density == -2) is not covered.
    mus, variances = np.array([[0.0, 0.0]]), np.array([[1.0, 1.0]])
    assert (
        covered_fraction([[2.0, 0.0], [1.99, 0.0], [0.0, 0.0], [3.0, 0.0]], mus, variances) == 0.5
    )


def test_mc_points_are_one_seeded_set(unit: DesignSpace) -> None:
    np.testing.assert_array_equal(mc_points(unit, 0), mc_points(unit, 0))
    assert mc_points(unit, 0).shape == (COVERAGE_POINTS, 2)
    assert not np.array_equal(mc_points(unit, 0, 50), mc_points(unit, 1, 50))


def test_coverage_matches_ellipse_area(unit: DesignSpace) -> None:
    # One circle of radius 2*sigma = 0.4 at the centre: area pi*0.16 ~ 0.5027.
    cov = coverage([[0.5, 0.5]], [[0.04, 0.04]], unit)
    assert abs(cov - math.pi * 0.16) < 0.02
    assert cov == coverage([[0.5, 0.5]], [[0.04, 0.04]], unit, seed=0)
    assert coverage([[0.5, 0.5]], [[100.0, 100.0]], unit) == 1.0


def test_coverage_uses_the_max_over_experts(unit: DesignSpace) -> None:
    # Two disjoint circles (radius 0.2) on the same point set: covered counts add up.
    var = [[0.01, 0.01]]
    left = coverage([[0.25, 0.5]], var, unit, n_points=2000)
    right = coverage([[0.75, 0.5]], var, unit, n_points=2000)
    both = coverage([[0.25, 0.5], [0.75, 0.5]], var * 2, unit, n_points=2000)
    assert 0.08 < left < 0.17
    assert both == pytest.approx(left + right, abs=1e-12)
