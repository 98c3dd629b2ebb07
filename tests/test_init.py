"""Initial centres, widths, sigma calibration and initial designs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pec.errors import InputError
from pec.maths.coverage import coverage
from pec.maths.design_space import DesignSpace
from pec.maths.init import (
    calibrate_sigma_scale,
    grid_centers,
    initial_variances,
    initialise_gaussians,
    sample_designs,
    stochastic_fps_centers,
)


@pytest.fixture
def space() -> DesignSpace:
    return DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))


@pytest.fixture
def unit() -> DesignSpace:
    return DesignSpace(gcr=(0.0, 1.0), spcf=(0.0, 1.0))


# --- grid -------------------------------------------------------------------------------


def test_grid_k3_matches_reference_example(space: DesignSpace) -> None:
    expected = [[0.785, 0.00325], [0.785, 0.00775], [0.855, 0.00325]]
    np.testing.assert_allclose(grid_centers(3, space), expected, rtol=1e-12)


def test_grid_k1_is_the_box_centre(space: DesignSpace) -> None:
    np.testing.assert_allclose(grid_centers(1, space), [[0.82, 0.0055]], rtol=1e-12)


def test_grid_k2_takes_first_minimum_one_by_two(space: DesignSpace) -> None:
    # n1=1 (n2=2) and n1=2 (n2=1) tie on |n1-n2|=1; the first (n1=1) wins.
    np.testing.assert_allclose(grid_centers(2, space), [[0.82, 0.00325], [0.82, 0.00775]])


def test_grid_k5_uses_two_by_three_gcr_major(space: DesignSpace) -> None:
    expected = [
        [0.785, 0.0025],
        [0.785, 0.0055],
        [0.785, 0.0085],
        [0.855, 0.0025],
        [0.855, 0.0055],
    ]
    np.testing.assert_allclose(grid_centers(5, space), expected, rtol=1e-12)


def test_grid_rejects_bad_k(space: DesignSpace) -> None:
    with pytest.raises(InputError, match="K="):
        grid_centers(0, space)


# --- widths -----------------------------------------------------------------------------


def test_initial_variances_formula(space: DesignSpace) -> None:
    # K=4: std = 0.1 * range / 2 -> GCR 0.007, spcf 0.00045.
    variances = initial_variances(4, space, 0.1)
    assert variances.shape == (4, 2)
    np.testing.assert_allclose(variances, np.tile([0.007**2, 0.00045**2], (4, 1)), rtol=1e-12)
    np.testing.assert_allclose(initial_variances(1, space, 0.2), [[0.028**2, 0.0018**2]])
    with pytest.raises(InputError, match="sigma_scale"):
        initial_variances(3, space, 0.0)


# --- stochastic fps ---------------------------------------------------------------------


def test_fps_is_deterministic_and_seed_dependent(space: DesignSpace) -> None:
    first = stochastic_fps_centers(4, space, 3, pool_size=2000)
    np.testing.assert_array_equal(first, stochastic_fps_centers(4, space, 3, pool_size=2000))
    assert not np.array_equal(first, stochastic_fps_centers(4, space, 4, pool_size=2000))
    assert space.contains(first).all()
    unit_centres = space.normalize(first)
    gaps = [np.linalg.norm(unit_centres[i] - unit_centres[j]) for i in range(4) for j in range(i)]
    assert min(gaps) > 0.3  # well spread in the unit square


def test_fps_first_centre_is_most_central_pool_point(unit: DesignSpace) -> None:
    centre = stochastic_fps_centers(1, unit, 0, pool_size=5000, lloyd_iterations=0)
    assert np.linalg.norm(centre[0] - [0.5, 0.5]) < 0.03


def test_fps_second_centre_maximises_min_of_distance_and_twice_clearance(
    unit: DesignSpace,
) -> None:
    # From (0.5, 0.5) the best score is on a diagonal where distance == 2 x clearance:
    # clearance c = sqrt(2)/2 / (2 + sqrt(2)) ~ 0.207.
    centres = stochastic_fps_centers(2, unit, 1, pool_size=20000, lloyd_iterations=0)
    second = centres[1]
    clearance = min(second.min(), (1 - second).min())
    optimum = math.sqrt(2) / 2 / (2 + math.sqrt(2))
    assert abs(clearance - optimum) < 0.03
    assert abs(abs(second[0] - 0.5) - abs(second[1] - 0.5)) < 0.06


def test_fps_k1_lloyd_moves_to_pool_mean_and_stops_early(space: DesignSpace) -> None:
    one = stochastic_fps_centers(1, space, 5, pool_size=4000, lloyd_iterations=1)
    many = stochastic_fps_centers(1, space, 5, pool_size=4000, lloyd_iterations=12)
    np.testing.assert_array_equal(one, many)  # a fixed point after one step
    np.testing.assert_allclose(space.normalize(one)[0], [0.5, 0.5], atol=0.02)


def test_fps_top_right_anchor(unit: DesignSpace) -> None:
    centres = stochastic_fps_centers(
        3, unit, 0, pool_size=5000, lloyd_iterations=0, anchor="top_right"
    )
    assert np.linalg.norm(centres[0] - [0.88, 0.88]) < 0.03
    relaxed = stochastic_fps_centers(3, unit, 0, pool_size=5000, anchor="top_right")
    plain = stochastic_fps_centers(3, unit, 0, pool_size=5000)
    assert not np.array_equal(relaxed, plain)
    with pytest.raises(InputError, match="init_anchor_region"):
        stochastic_fps_centers(3, unit, 0, anchor="bottom_left")


def test_fps_jitter_changes_centres_and_stays_in_box(unit: DesignSpace) -> None:
    base = stochastic_fps_centers(3, unit, 2, pool_size=1000, lloyd_iterations=0)
    jittered = stochastic_fps_centers(
        3, unit, 2, pool_size=1000, lloyd_iterations=0, jitter_scale=0.5
    )
    assert not np.array_equal(base, jittered)
    assert unit.contains(jittered).all()
    with pytest.raises(InputError, match="init_jitter_scale"):
        stochastic_fps_centers(3, unit, 2, jitter_scale=-1.0)


def test_fps_empty_lloyd_cell_keeps_its_centre(unit: DesignSpace) -> None:
    # Seed 6: huge jitter clips the two centres to (0,0) and (1,1); both pool points are
    # nearer (0,0), so the (1,1) cell stays empty and must keep its centre (no NaN).
    centres = stochastic_fps_centers(
        2, unit, 6, pool_size=2, lloyd_iterations=5, jitter_scale=100.0
    )
    assert np.all(np.isfinite(centres))
    np.testing.assert_array_equal(centres[1], [1.0, 1.0])


# --- calibration ------------------------------------------------------------------------


def test_calibration_reaches_target(space: DesignSpace) -> None:
    centres = grid_centers(3, space)
    scale, realised = calibrate_sigma_scale(centres, space, 0.5, 0.1)
    assert abs(realised - 0.5) <= 1e-3
    assert realised == coverage(centres, initial_variances(3, space, scale), space, seed=0)
    small, _ = calibrate_sigma_scale(centres, space, 0.3, 0.1)
    assert small < scale  # coverage grows with the scale


def test_calibration_doubles_up_to_full_coverage(space: DesignSpace) -> None:
    scale, realised = calibrate_sigma_scale(grid_centers(2, space), space, 1.0, 1e-4)
    assert realised == 1.0
    assert scale > 1e-3


def test_calibration_unreachable_target_raises(space: DesignSpace) -> None:
    with pytest.raises(InputError, match="unreachable"):
        calibrate_sigma_scale(grid_centers(3, space), space, 1.2, 0.1)
    with pytest.raises(InputError, match="target_init_coverage"):
        calibrate_sigma_scale(grid_centers(3, space), space, math.nan, 0.1)


# --- sampling ---------------------------------------------------------------------------


def test_sample_designs_clips_not_rejects(space: DesignSpace) -> None:
    rng = np.random.default_rng(0)
    draws = sample_designs([0.75, 0.001], [0.01, 1e-4], 400, space, rng)
    assert draws.shape == (400, 2)
    assert space.contains(draws).all()
    at_low = np.mean(draws[:, 0] == 0.75)
    assert 0.4 < at_low < 0.6  # about half the draws fell below and were clipped
    assert np.any(draws[:, 1] == 0.010) and np.any(draws[:, 1] == 0.001)


def test_sample_designs_deterministic_and_zero_variance(space: DesignSpace) -> None:
    a = sample_designs([0.8, 0.005], [1e-4, 1e-6], 10, space, np.random.default_rng(1))
    b = sample_designs([0.8, 0.005], [1e-4, 1e-6], 10, space, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    fixed = sample_designs([0.8, 0.005], [0.0, 0.0], 3, space, np.random.default_rng(1))
    np.testing.assert_array_equal(fixed, [[0.8, 0.005]] * 3)


# --- initialise_gaussians ---------------------------------------------------------------


def test_initialise_grid_without_target_keeps_scale(space: DesignSpace) -> None:
    result = initialise_gaussians(3, space, n_init=50, sigma_scale=0.1, seed=0, strategy="grid")
    np.testing.assert_allclose(result.centers, grid_centers(3, space))
    np.testing.assert_allclose(result.variances, initial_variances(3, space, 0.1))
    assert result.sigma_scale == 0.1
    assert result.target_coverage is None
    assert result.strategy == "grid" and result.seed == 0
    # Three disjoint 2-sigma ellipses inside the box: 3 * 4*pi*(0.1^2/3) of the box.
    assert abs(result.realized_coverage - 4 * math.pi * 0.01) < 0.01
    assert len(result.designs) == 3
    for designs in result.designs:
        assert designs.shape == (50, 2)
        assert space.contains(designs).all()
    assert not np.array_equal(
        result.designs[0] - result.centers[0], result.designs[1] - result.centers[1]
    )


def test_initialise_is_deterministic_per_seed(space: DesignSpace) -> None:
    kwargs = {"n_init": 20, "sigma_scale": 0.1, "init_pool_size": 2000}
    a = initialise_gaussians(3, space, seed=4, **kwargs)  # type: ignore[arg-type]
    b = initialise_gaussians(3, space, seed=4, **kwargs)  # type: ignore[arg-type]
    c = initialise_gaussians(3, space, seed=5, **kwargs)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.centers, b.centers)
    for left, right in zip(a.designs, b.designs, strict=True):
        np.testing.assert_array_equal(left, right)
    assert not np.array_equal(a.centers, c.centers)
    assert not np.array_equal(a.designs[0], c.designs[0])


def test_initialise_fps_calibrates_to_grid_coverage(space: DesignSpace) -> None:
    result = initialise_gaussians(3, space, n_init=5, sigma_scale=0.1, seed=0, init_pool_size=2000)
    grid_coverage = coverage(grid_centers(3, space), initial_variances(3, space, 0.1), space)
    assert result.strategy == "stochastic_fps"
    assert result.target_coverage == grid_coverage
    assert abs(result.realized_coverage - grid_coverage) <= 1e-3
    np.testing.assert_allclose(result.variances, initial_variances(3, space, result.sigma_scale))


def test_initialise_explicit_target_overrides(space: DesignSpace) -> None:
    result = initialise_gaussians(
        3, space, n_init=5, sigma_scale=0.1, seed=0, strategy="grid", target_init_coverage=0.6
    )
    assert result.target_coverage == 0.6
    assert abs(result.realized_coverage - 0.6) <= 1e-3
    assert result.sigma_scale > 0.1


def test_initialise_k1(space: DesignSpace) -> None:
    grid = initialise_gaussians(1, space, n_init=4, sigma_scale=0.1, seed=0, strategy="grid")
    np.testing.assert_allclose(grid.centers, [[0.82, 0.0055]])
    fps = initialise_gaussians(1, space, n_init=4, sigma_scale=0.1, seed=0, init_pool_size=2000)
    assert fps.centers.shape == (1, 2)
    np.testing.assert_allclose(space.normalize(fps.centers)[0], [0.5, 0.5], atol=0.03)


def test_initialise_explicit_centers(space: DesignSpace) -> None:
    centres = [[0.76, 0.002], [0.88, 0.009]]
    result = initialise_gaussians(2, space, n_init=3, sigma_scale=0.1, seed=0, centers=centres)
    np.testing.assert_array_equal(result.centers, centres)
    assert result.strategy == "explicit"
    assert result.target_coverage is None and result.sigma_scale == 0.1


@pytest.mark.parametrize(
    ("centres", "message"),
    [
        ([[0.8, 0.005]], "K=2"),
        ([[0.8, 0.005], [0.8, 0.005], [0.8, 0.005]], "K=2"),
        ([[0.8, 0.005], [0.95, 0.005]], r"centers\[1\]"),
        ([[0.8, 0.005], [0.8, math.nan]], "not finite"),
    ],
)
def test_initialise_rejects_bad_centers(
    space: DesignSpace, centres: list[list[float]], message: str
) -> None:
    with pytest.raises(InputError, match=message):
        initialise_gaussians(2, space, n_init=3, sigma_scale=0.1, seed=0, centers=centres)


def test_initialise_rejects_unknown_strategy(space: DesignSpace) -> None:
    with pytest.raises(InputError, match="init_strategy"):
        initialise_gaussians(2, space, n_init=3, sigma_scale=0.1, seed=0, strategy="random")
