"""Frontier candidate selection: modes, ordering, border band and its shortfall fill."""

from __future__ import annotations

import numpy as np
import pytest

from pec.errors import ConfigError, InputError
from pec.maths.coverage import max_log_density
from pec.maths.design_space import DesignSpace
from pec.maths.frontier import effective_mode, select_candidates


@pytest.fixture
def unit() -> DesignSpace:
    return DesignSpace(gcr=(0.0, 1.0), spcf=(0.0, 1.0))


def _pool(space: DesignSpace, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    pool = space.sample_uniform(size, np.random.default_rng(seed))
    return pool, max_log_density(pool, [[0.5, 0.5]], [[VAR, VAR]])


VAR = 0.05**2


def test_effective_mode_auto_switch() -> None:
    assert effective_mode("auto", 0, 18) == "border"
    assert effective_mode("auto", 17, 18) == "border"
    assert effective_mode("auto", 18, 18) == "frontier"
    assert effective_mode("auto", 30, 18) == "frontier"
    assert effective_mode("border", 99, 18) == "border"
    assert effective_mode("frontier", 0, 18) == "frontier"
    with pytest.raises(ConfigError, match="sampling_mode"):
        effective_mode("random", 0, 18)


def test_frontier_mode_picks_lowest_density_in_order(unit: DesignSpace) -> None:
    selection = select_candidates(
        [[0.5, 0.5]], [[VAR, VAR]], unit, F=10, pool_factor=20, mode="frontier", seed=3
    )
    pool, density = _pool(unit, 200, 3)
    expected = np.argsort(density, kind="stable")[:10]
    np.testing.assert_array_equal(selection.designs, pool[expected])
    np.testing.assert_allclose(selection.max_log_density, density[expected])
    assert np.all(np.diff(selection.max_log_density) >= 0)
    assert selection.max_log_density.max() <= np.sort(density)[10]
    assert selection.mode == "frontier"
    assert selection.band_count == 0
    assert selection.pool_size == 200


def test_border_band_shortfall_is_filled_by_ascending_density(unit: DesignSpace) -> None:
    # sigma = 0.05: the band (Mahalanobis 1..sqrt(5)) is a thin ring holding a few of the
    # 200 pool points, fewer than F = 10.
    selection = select_candidates(
        [[0.5, 0.5]], [[VAR, VAR]], unit, F=10, pool_factor=20, mode="border", seed=3
    )
    pool, density = _pool(unit, 200, 3)
    in_band = (density > -2.5) & (density < -0.5)
    n_band = int(in_band.sum())
    assert 0 < n_band < 10
    assert selection.band_count == n_band
    band = np.flatnonzero(in_band)
    band = band[np.argsort(density[band], kind="stable")]  # outermost first
    rest = np.flatnonzero(~in_band)
    rest = rest[np.argsort(density[rest], kind="stable")][: 10 - n_band]
    np.testing.assert_array_equal(selection.designs, pool[np.concatenate([band, rest])])
    assert selection.designs.shape == (10, 2)


def test_border_band_full(unit: DesignSpace) -> None:
    wide = 0.2**2
    selection = select_candidates(
        [[0.5, 0.5]], [[wide, wide]], unit, F=10, pool_factor=20, mode="border", seed=1
    )
    assert selection.band_count == 10
    assert np.all((selection.max_log_density > -2.5) & (selection.max_log_density < -0.5))
    assert np.all(np.diff(selection.max_log_density) >= 0)  # outermost first
    pool = unit.sample_uniform(200, np.random.default_rng(1))
    density = max_log_density(pool, [[0.5, 0.5]], [[wide, wide]])
    band_density = np.sort(density[(density > -2.5) & (density < -0.5)])
    np.testing.assert_allclose(selection.max_log_density, band_density[:10])


def test_border_empty_band_falls_back_entirely(unit: DesignSpace) -> None:
    # A Gaussian so wide that every pool point is above the inner edge: nothing in the band.
    selection = select_candidates(
        [[0.5, 0.5]], [[100.0, 100.0]], unit, F=5, pool_factor=4, mode="border", seed=0
    )
    assert selection.band_count == 0
    assert selection.designs.shape == (5, 2)
    assert np.all(np.diff(selection.max_log_density) >= 0)


def test_custom_band_edges(unit: DesignSpace) -> None:
    selection = select_candidates(
        [[0.5, 0.5]],
        [[VAR, VAR]],
        unit,
        F=3,
        pool_factor=20,
        mode="border",
        border_inner_ld=-10.0,
        border_outer_ld=-20.0,
        seed=2,
    )
    assert selection.band_count == 3
    assert np.all((selection.max_log_density > -20.0) & (selection.max_log_density < -10.0))


def test_selection_is_seeded(unit: DesignSpace) -> None:
    args = ([[0.3, 0.3], [0.7, 0.7]], [[0.01, 0.01], [0.01, 0.01]], unit)
    a = select_candidates(*args, F=8, pool_factor=5, mode="border", seed=11)
    b = select_candidates(*args, F=8, pool_factor=5, mode="border", seed=11)
    c = select_candidates(*args, F=8, pool_factor=5, mode="border", seed=12)
    np.testing.assert_array_equal(a.designs, b.designs)
    assert not np.array_equal(a.designs, c.designs)


def test_invalid_arguments(unit: DesignSpace) -> None:
    gaussians = ([[0.5, 0.5]], [[VAR, VAR]], unit)
    with pytest.raises(ConfigError, match="effective_mode"):
        select_candidates(*gaussians, F=3, pool_factor=2, mode="auto", seed=0)
    with pytest.raises(InputError, match="F="):
        select_candidates(*gaussians, F=0, pool_factor=2, mode="frontier", seed=0)
    with pytest.raises(InputError, match="pool_factor"):
        select_candidates(*gaussians, F=3, pool_factor=0, mode="frontier", seed=0)
    with pytest.raises(ConfigError, match="border band"):
        select_candidates(
            *gaussians,
            F=3,
            pool_factor=2,
            mode="border",
            border_inner_ld=-3.0,
            border_outer_ld=-1.0,
            seed=0,
        )
