"""The PEC maths on a 3-D design space (GCR x spcf x leg) against an independent reference.

Every reference here is written from PEC_DETAILS.md's definitions with plain loops over
points, experts and axes (no pec code), so a slip in the vectorised library code or in its
axis handling shows up as a mismatch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pec.errors import InputError
from pec.maths.coverage import coverage, log_density, mc_points
from pec.maths.design_space import DesignSpace
from pec.maths.frontier import select_candidates
from pec.maths.init import (
    calibrate_sigma_scale,
    grid_centers,
    initial_variances,
    initialise_gaussians,
    sample_designs,
    stochastic_fps_centers,
)
from pec.maths.refit import fit_gaussian, refit_experts
from pec.maths.routing import route
from pec.maths.score_routing import evidence_from, predict_scores, route_by_scores
from pec.maths.seeds import derive_seed

SPACE = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010), leg=(0.20, 0.48))
LOWS = [0.75, 0.001, 0.20]
HIGHS = [0.89, 0.010, 0.48]


def ref_log_density(point: list[float], mu: list[float], var: list[float]) -> float:
    return -sum((point[a] - mu[a]) ** 2 / (2.0 * var[a]) for a in range(len(point)))


def ref_unit(point: list[float]) -> list[float]:
    return [(point[a] - LOWS[a]) / (HIGHS[a] - LOWS[a]) for a in range(3)]


def some_gaussians(K: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mus = SPACE.sample_uniform(K, rng)
    ranges = np.asarray(HIGHS) - np.asarray(LOWS)
    variances = (rng.uniform(0.05, 0.25, size=(K, 3)) * ranges) ** 2
    return mus, variances


def test_space_has_three_named_axes_in_order() -> None:
    assert SPACE.axes == ("gcr", "spcf", "leg")
    assert SPACE.keys == ("GCR", "spcf", "leg")
    assert SPACE.dim == 3
    assert SPACE.as_mapping() == {"GCR": [0.75, 0.89], "spcf": [0.001, 0.01], "leg": [0.2, 0.48]}
    assert DesignSpace.from_bounds(SPACE.as_mapping()) == SPACE
    assert DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.01)).axes == ("gcr", "spcf")
    points = SPACE.sample_uniform(500, np.random.default_rng(1))
    assert points.shape == (500, 3) and bool(SPACE.contains(points).all())
    unit = SPACE.normalize(points)
    for p, u in zip(points[:20], unit[:20], strict=True):
        np.testing.assert_allclose(u, ref_unit(list(p)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(SPACE.denormalize(unit), points, atol=1e-15)
    with pytest.raises(InputError, match=r"\(n, 3\) array of \[GCR, spcf, leg\] triples"):
        SPACE.normalize(np.zeros((2, 2)))
    with pytest.raises(InputError, match="leg range"):
        DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.01), leg=(0.5, 0.2))


def test_log_density_and_coverage_match_the_reference() -> None:
    mus, variances = some_gaussians(4, 3)
    points = SPACE.sample_uniform(300, np.random.default_rng(4))
    got = log_density(points, mus, variances)
    for i in range(0, 300, 7):
        for k in range(4):
            want = ref_log_density(list(points[i]), list(mus[k]), list(variances[k]))
            assert got[i, k] == pytest.approx(want, rel=1e-12, abs=1e-12)
    mc = mc_points(SPACE, 9, 2000)
    covered = 0
    for p in mc:
        best = max(ref_log_density(list(p), list(mus[k]), list(variances[k])) for k in range(4))
        covered += best > -2.0
    assert coverage(mus, variances, SPACE, seed=9, n_points=2000) == covered / 2000
    # Coverage is measured over all three axes: squeezing only the leg axis lowers it.
    thin = variances.copy()
    thin[:, 2] /= 100.0
    assert coverage(mus, thin, SPACE, seed=9, n_points=2000) < covered / 2000
    with pytest.raises(InputError, match="points have 2 axes but the experts have 3"):
        log_density(np.zeros((1, 2)), mus, variances)


@pytest.mark.parametrize("K", [1, 5, 8, 9, 27])
def test_grid_is_the_smallest_cube_gcr_major(K: int) -> None:
    n = 1
    while n**3 < K:
        n += 1
    mids = [
        [LOWS[a] + (HIGHS[a] - LOWS[a]) * (2 * i + 1) / (2 * n) for i in range(n)] for a in range(3)
    ]
    want = [[g, s, m] for g in mids[0] for s in mids[1] for m in mids[2]][:K]
    np.testing.assert_allclose(grid_centers(K, SPACE), want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("K", [1, 3, 6, 10])
def test_initial_std_is_sigma_scale_times_range_over_cube_root_of_k(K: int) -> None:
    got = initial_variances(K, SPACE, 0.12)
    for a in range(3):
        std = 0.12 * (HIGHS[a] - LOWS[a]) / K ** (1.0 / 3.0)
        np.testing.assert_allclose(got[:, a], std**2, rtol=1e-14)


def ref_fps_lloyd(K: int, seed: int, pool_size: int, lloyd: int) -> np.ndarray:
    """Stochastic FPS with 2x boundary clearance, then Lloyd, in the unit cube (loops)."""
    pool = np.random.default_rng(seed).uniform(0.0, 1.0, size=(pool_size, 3))
    clear = [min(min(p), min(1.0 - v for v in p)) for p in pool]
    first = max(range(pool_size), key=lambda i: (clear[i], -i))
    chosen = [first]
    for _ in range(1, K):
        best_i, best_score = -1, -math.inf
        for i in range(pool_size):
            if i in chosen:
                continue
            nearest = min(math.dist(pool[i], pool[j]) for j in chosen)
            score = min(nearest, 2.0 * clear[i])
            if score > best_score:
                best_i, best_score = i, score
        chosen.append(best_i)
    centres = [list(pool[i]) for i in chosen]
    for _ in range(lloyd):
        cells: list[list[list[float]]] = [[] for _ in range(K)]
        for p in pool:
            d2 = [sum((p[a] - c[a]) ** 2 for a in range(3)) for c in centres]
            cells[d2.index(min(d2))].append(list(p))
        new = [
            [sum(q[a] for q in cell) / len(cell) for a in range(3)] if cell else c
            for cell, c in zip(cells, centres, strict=True)
        ]
        shift = max(math.dist(a, b) for a, b in zip(new, centres, strict=True))
        centres = new
        if shift < 1e-4:
            break
    return np.asarray([[LOWS[a] + c[a] * (HIGHS[a] - LOWS[a]) for a in range(3)] for c in centres])


def test_stochastic_fps_and_lloyd_in_the_unit_cube_match_the_reference() -> None:
    got = stochastic_fps_centers(5, SPACE, 123, pool_size=300, lloyd_iterations=4)
    np.testing.assert_allclose(got, ref_fps_lloyd(5, 123, 300, 4), rtol=0, atol=1e-12)
    assert got.shape == (5, 3) and bool(SPACE.contains(got).all())
    with pytest.raises(InputError, match="not defined in 3-D"):
        stochastic_fps_centers(3, SPACE, 1, pool_size=50, anchor="top_right")


def test_initialise_gaussians_in_3d_calibrates_to_the_grid_coverage() -> None:
    result = initialise_gaussians(
        4, SPACE, n_init=7, sigma_scale=0.15, seed=5, init_pool_size=400, lloyd_iterations=3
    )
    assert result.centers.shape == (4, 3) and result.variances.shape == (4, 3)
    assert [d.shape for d in result.designs] == [(7, 3)] * 4
    # The default target: the coverage the 3-D grid would have at sigma_scale 0.15.
    mc = mc_points(SPACE, 0)
    grid = grid_centers(4, SPACE)
    grid_var = [[(0.15 * (HIGHS[a] - LOWS[a]) / 4 ** (1 / 3)) ** 2 for a in range(3)]] * 4
    covered = sum(
        max(ref_log_density(list(p), list(grid[k]), grid_var[k]) for k in range(4)) > -2.0
        for p in mc
    )
    assert result.target_coverage == covered / len(mc)
    assert abs(result.realized_coverage - result.target_coverage) <= 1e-3
    scale, realised = calibrate_sigma_scale(result.centers, SPACE, result.target_coverage, 0.15)
    assert scale == result.sigma_scale and realised == result.realized_coverage
    # Initial designs: N_init draws per expert from its Gaussian, every coordinate clipped.
    rng = np.random.default_rng(derive_seed(5, "init-designs", 2))
    raw = rng.normal(result.centers[2], np.sqrt(result.variances[2]), size=(7, 3))
    np.testing.assert_array_equal(result.designs[2], np.clip(raw, LOWS, HIGHS))


def test_explicit_centres_are_triples_inside_the_box() -> None:
    centres = [[0.8, 0.004, 0.3], [0.86, 0.008, 0.45]]
    result = initialise_gaussians(2, SPACE, n_init=3, sigma_scale=0.1, seed=0, centers=centres)
    assert result.strategy == "explicit"
    np.testing.assert_array_equal(result.centers, centres)
    with pytest.raises(InputError, match=r"pass exactly K=2 \[GCR, spcf, leg\] triples"):
        initialise_gaussians(
            2, SPACE, n_init=3, sigma_scale=0.1, seed=0, centers=[[0.8, 0.004]] * 2
        )
    with pytest.raises(InputError, match=r"outside the design space GCR .* x leg"):
        initialise_gaussians(
            2,
            SPACE,
            n_init=3,
            sigma_scale=0.1,
            seed=0,
            centers=[[0.8, 0.004, 0.6], [0.8, 0.004, 0.3]],
        )


def test_sample_designs_clips_every_axis() -> None:
    draws = sample_designs(
        [0.89, 0.001, 0.2], [0.01, 1e-6, 0.01], 400, SPACE, np.random.default_rng(2)
    )
    assert draws.shape == (400, 3)
    assert bool(SPACE.contains(draws).all())
    assert np.sum(draws[:, 2] == 0.2) > 100  # clipped, not rejected


def ref_fit(designs: list[list[float]], min_var_scale: float) -> tuple[list[float], list[float]]:
    n = len(designs)
    ddof = 1 if n > 1 else 0
    mean = [sum(d[a] for d in designs) / n for a in range(3)]
    var = []
    for a in range(3):
        ss = sum((d[a] - mean[a]) ** 2 for d in designs)
        var.append(max(ss / (n - ddof), (min_var_scale * (HIGHS[a] - LOWS[a])) ** 2))
    return mean, var


def test_refit_matches_the_reference_per_axis_with_floor_and_ddof() -> None:
    rng = np.random.default_rng(8)
    mus, variances = some_gaussians(3, 8)
    designs = [SPACE.sample_uniform(n, rng) for n in (4, 1, 0)]
    designs[0][:, 2] = 0.3  # a collapsed leg axis: the floor applies on that axis only
    candidates = SPACE.sample_uniform(6, rng)
    candidates[[0, 2, 3], 2] = 0.3  # expert 0 wins these (ties go to the lower id)
    scores = np.array([[5, 1, 3, 0, 2, 2], [5, 7, 3, 0, 1, 4], [1, 1, 1, 0, 9, 4]], dtype=float)
    result = refit_experts(mus, variances, designs, candidates, scores, SPACE, min_designs=2)
    winners = [max(range(3), key=lambda k, i=i: (scores[k, i], -k)) for i in range(6)]
    assert result.winners.tolist() == winners
    for k in range(3):
        mine = [list(d) for d in designs[k]] + [
            list(candidates[i]) for i in range(6) if winners[i] == k
        ]
        fit = result.experts[k]
        assert fit.designs.shape == (len(mine), 3)
        if len(mine) >= 2:
            mean, var = ref_fit(mine, 0.01)
            np.testing.assert_allclose(fit.mu, mean, rtol=1e-12)
            np.testing.assert_allclose(fit.variance, var, rtol=1e-12)
        else:
            np.testing.assert_array_equal(fit.variance, variances[k])
    assert result.experts[0].variance[2] == pytest.approx((0.01 * 0.28) ** 2)
    mean, var = ref_fit([[0.8, 0.005, 0.31]], 0.01)  # one design: ddof 0, then the floor
    got_mean, got_var = fit_gaussian([[0.8, 0.005, 0.31]], SPACE, 0.01)
    np.testing.assert_allclose(got_mean, mean)
    np.testing.assert_allclose(got_var, var)
    with pytest.raises(InputError, match="mus have 3 axes but the design space has 2"):
        refit_experts(
            mus, variances, designs, candidates, scores, DesignSpace((0.75, 0.89), (0.001, 0.01))
        )


@pytest.mark.parametrize("mode", ["frontier", "border"])
def test_frontier_candidates_match_the_reference(mode: str) -> None:
    mus, variances = some_gaussians(3, 11)
    got = select_candidates(mus, variances, SPACE, F=12, pool_factor=10, mode=mode, seed=77)
    pool = SPACE.sample_uniform(120, np.random.default_rng(77))
    best = [
        max(ref_log_density(list(p), list(mus[k]), list(variances[k])) for k in range(3))
        for p in pool
    ]
    order = sorted(range(120), key=lambda i: (best[i], i))
    if mode == "frontier":
        want = order[:12]
    else:
        band = [i for i in order if -2.5 < best[i] < -0.5]
        rest = [i for i in order if not -2.5 < best[i] < -0.5]
        want = (band + rest)[:12] if len(band) >= 12 else band + rest[: 12 - len(band)]
        assert got.band_count == min(12, len(band))
    np.testing.assert_array_equal(got.designs, pool[want])
    assert got.designs.shape == (12, 3)


def test_nearest_centre_router_normalises_all_three_axes() -> None:
    mus, _ = some_gaussians(4, 21)
    designs = SPACE.sample_uniform(200, np.random.default_rng(22))
    want = []
    for p in designs:
        d2 = [
            sum((a - b) ** 2 for a, b in zip(ref_unit(list(p)), ref_unit(list(m)), strict=True))
            for m in mus
        ]
        want.append(d2.index(min(d2)))
    assert route(designs, mus, SPACE).tolist() == want
    # leg matters: two centres equal in GCR and spcf, apart in leg
    centres = np.array([[0.8, 0.005, 0.22], [0.8, 0.005, 0.46]])
    assert route([[0.8, 0.005, 0.25], [0.8, 0.005, 0.44]], centres, SPACE).tolist() == [0, 1]


def test_score_informed_router_matches_the_reference() -> None:
    mus, _ = some_gaussians(3, 31)
    rng = np.random.default_rng(32)
    known = SPACE.sample_uniform(30, rng)
    scores = rng.integers(0, 20, size=(3, 30)).astype(float)
    scores[2, :10] = np.nan  # expert 2 was not evaluated on the first ten
    evidence = evidence_from(
        [(known[:10], [scores[0, :10], scores[1, :10], None]), (known[10:], scores[:, 10:])],
        3,
        dim=3,
    )
    queries = SPACE.sample_uniform(15, rng)
    got = predict_scores(queries, evidence, SPACE, neighbours=4)
    for i, q in enumerate(queries):
        for k in range(3):
            valid = [j for j in range(30) if not np.isnan(scores[k, j])]
            dist = sorted(
                ((math.dist(ref_unit(list(q)), ref_unit(list(known[j]))), j) for j in valid),
                key=lambda t: t[0],
            )[:4]
            w = [1.0 / (d + 1e-3) for d, _ in dist]
            want = sum(wi * scores[k, j] for wi, (_, j) in zip(w, dist, strict=True)) / sum(w)
            assert got[i, k] == pytest.approx(want, rel=1e-12)
    routed = route_by_scores(queries, evidence, mus, SPACE, neighbours=4)
    assert routed.tolist() == [int(np.nanargmax(row)) for row in got]
