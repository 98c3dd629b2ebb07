"""Where the K Gaussians start, how wide they are, and their first designs.

Centres are placed in the unit square or cube (so every axis counts equally) and mapped
back to physical units; widths follow std_d = sigma_scale x range_d / K^(1/d) (sqrt(K) in
2-D) so that K experts together span roughly the same area or volume whatever K is.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from pec.errors import InputError
from pec.maths.coverage import covered_fraction, mc_points
from pec.maths.design_space import DesignSpace, FloatArray, as_vector
from pec.maths.seeds import derive_seed

logger = logging.getLogger(__name__)

INIT_STRATEGIES: tuple[str, ...] = ("grid", "stochastic_fps")
EXPLICIT_STRATEGY: str = "explicit"
"""Recorded as the strategy when the caller passes explicit centres."""
ANCHOR_REGIONS: tuple[str, ...] = ("top_right",)
TOP_RIGHT_ANCHOR: tuple[float, float] = (0.88, 0.88)

CALIBRATION_LOWER_SCALE: float = 1e-6
CALIBRATION_MIN_UPPER_SCALE: float = 1e-3
CALIBRATION_MAX_DOUBLINGS: int = 64
CALIBRATION_MAX_BISECTIONS: int = 40
CALIBRATION_TOLERANCE: float = 1e-3
LLOYD_SHIFT_TOLERANCE: float = 1e-4


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name}={value!r} is invalid; pass an integer >= {minimum}")
    return int(value)


def _check_positive(name: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}={value!r} is not a number; pass a positive float") from exc
    if not (math.isfinite(number) and number > 0.0):
        raise InputError(f"{name}={value!r} is invalid; pass a finite float > 0")
    return number


def grid_centers(K: int, space: DesignSpace) -> FloatArray:
    """Cell midpoints of the most square n1 x n2 grid with n1 * n2 >= K, GCR-major, first K.

    3-D: the smallest n x n x n cube with n^3 >= K, GCR-major then spcf then leg, first K
    (the original's 3-D rule).
    """
    K = _check_count("K", K, 1)
    if space.dim == 3:
        n = 1
        while n**3 < K:
            n += 1
        mids = [
            space.lows[a] + (space.ranges[a] / (2 * n)) * (2 * np.arange(n) + 1) for a in range(3)
        ]
        cube = [(float(g), float(s), float(m)) for g in mids[0] for s in mids[1] for m in mids[2]]
        return np.array(cube[:K], dtype=np.float64)
    best_n1 = 1
    best_gap = math.inf
    for n1 in range(1, K + 1):
        gap = abs(n1 - math.ceil(K / n1))
        if gap < best_gap:  # strict: the first minimum wins
            best_n1, best_gap = n1, gap
    n1 = best_n1
    n2 = math.ceil(K / n1)
    gcr_mid = space.gcr[0] + (space.ranges[0] / (2 * n1)) * (2 * np.arange(n1) + 1)
    spcf_mid = space.spcf[0] + (space.ranges[1] / (2 * n2)) * (2 * np.arange(n2) + 1)
    cells = [(float(g), float(s)) for g in gcr_mid for s in spcf_mid]
    return np.array(cells[:K], dtype=np.float64)


def stochastic_fps_centers(
    K: int,
    space: DesignSpace,
    rng_seed: int,
    pool_size: int = 10000,
    lloyd_iterations: int = 12,
    jitter_scale: float = 0.0,
    anchor: str | None = None,
) -> FloatArray:
    """Farthest-point seeding on a random pool, then Lloyd relaxation: well-spread centres.

    The 2 x clearance term keeps greedy picks away from the box edges, where half of an
    expert's Gaussian would fall outside the design space.
    """
    K = _check_count("K", K, 1)
    pool_size = _check_count("init_pool_size", pool_size, K)
    lloyd_iterations = _check_count("lloyd_iterations", lloyd_iterations, 0)
    jitter = float(jitter_scale)
    if not (math.isfinite(jitter) and jitter >= 0.0):
        raise InputError(f"init_jitter_scale={jitter_scale!r} is invalid; pass a float >= 0")
    if anchor is not None and anchor not in ANCHOR_REGIONS:
        raise InputError(
            f"init_anchor_region={anchor!r} is unknown; use null or one of {list(ANCHOR_REGIONS)}"
        )
    if anchor is not None and space.dim != 2:
        raise InputError(
            f"init_anchor_region={anchor!r} names a corner of the GCR x spcf square; it is not "
            "defined in 3-D, use null"
        )
    rng = np.random.default_rng(rng_seed)
    pool: FloatArray = rng.uniform(0.0, 1.0, size=(pool_size, space.dim))
    clearance = np.min(np.concatenate([pool, 1.0 - pool], axis=1), axis=1)

    if anchor == "top_right":
        anchor_distance = np.linalg.norm(pool - np.array(TOP_RIGHT_ANCHOR), axis=1)
        # lexsort: last key is primary -> nearest to the anchor, then the larger clearance.
        first = int(np.lexsort((-clearance, anchor_distance))[0])
    else:
        first = int(np.argmax(clearance))
    chosen = [first]
    nearest_distance = np.linalg.norm(pool - pool[first], axis=1)
    for _ in range(1, K):
        score = np.minimum(nearest_distance, 2.0 * clearance)
        score[chosen] = -np.inf
        pick = int(np.argmax(score))
        chosen.append(pick)
        nearest_distance = np.minimum(nearest_distance, np.linalg.norm(pool - pool[pick], axis=1))
    centers: FloatArray = pool[chosen].copy()

    if jitter > 0.0:
        centers = centers + rng.normal(0.0, jitter / math.sqrt(K), size=centers.shape)
        centers = np.clip(centers, 0.0, 1.0)

    for _ in range(lloyd_iterations):
        owner = np.argmin(np.sum((pool[:, None, :] - centers[None, :, :]) ** 2, axis=2), axis=1)
        updated = centers.copy()
        for k in range(K):
            cell = pool[owner == k]
            if cell.shape[0] > 0:  # an empty cell keeps its centre
                updated[k] = cell.mean(axis=0)
        shift = float(np.max(np.linalg.norm(updated - centers, axis=1)))
        centers = updated
        if shift < LLOYD_SHIFT_TOLERANCE:
            break
    return space.denormalize(centers)


def initial_variances(K: int, space: DesignSpace, sigma_scale: float) -> FloatArray:
    """(K, d) variances, std_d = sigma_scale x range_d / K^(1/d), the same for every expert."""
    K = _check_count("K", K, 1)
    scale = _check_positive("sigma_scale", sigma_scale)
    # sqrt for d = 2 exactly as before (K ** 0.5 need not round the same way).
    k_factor = math.sqrt(K) if space.dim == 2 else K ** (1.0 / space.dim)
    std = scale * space.ranges / k_factor
    return np.tile(std**2, (K, 1))


def calibrate_sigma_scale(
    centers: ArrayLike,
    space: DesignSpace,
    target_coverage: float,
    start_scale: float,
    coverage_seed: int = 0,
) -> tuple[float, float]:
    """Find the sigma_scale whose initial coverage matches the target: (scale, coverage).

    Coverage grows with the scale, so: bracket by doubling the upper end, then bisect,
    stopping within 1e-3 of the target or returning the closest scale seen.
    """
    center_array = space.points("centers", centers, allow_empty=False)
    K = center_array.shape[0]
    target = float(target_coverage)
    if not math.isfinite(target) or target < 0.0:
        raise InputError(
            f"target_init_coverage={target_coverage!r} is invalid; pass a fraction in [0, 1]"
        )
    if target > 1.0:
        raise InputError(
            f"target_init_coverage={target_coverage!r} is unreachable (coverage is at most 1); "
            "pass a fraction in [0, 1]"
        )
    start = _check_positive("sigma_scale", start_scale)
    points = mc_points(space, coverage_seed)

    def coverage_at(scale: float) -> float:
        return covered_fraction(points, center_array, initial_variances(K, space, scale))

    best_scale, best_coverage = math.nan, math.nan

    def remember(scale: float, value: float) -> None:
        nonlocal best_scale, best_coverage
        if math.isnan(best_coverage) or abs(value - target) < abs(best_coverage - target):
            best_scale, best_coverage = scale, value

    low = CALIBRATION_LOWER_SCALE
    high = max(start, CALIBRATION_MIN_UPPER_SCALE)
    high_coverage = coverage_at(high)
    doublings = 0
    while high_coverage < target and doublings < CALIBRATION_MAX_DOUBLINGS:
        low = high  # still below target, so the answer lies above it
        high *= 2.0
        high_coverage = coverage_at(high)
        doublings += 1
    if high_coverage < target:
        raise InputError(
            f"target_init_coverage={target} is unreachable: coverage is {high_coverage:.4f} "
            f"even at sigma_scale={high:.3g}; lower the target or move the centres"
        )
    remember(high, high_coverage)
    if abs(high_coverage - target) <= CALIBRATION_TOLERANCE:
        return high, high_coverage
    for _ in range(CALIBRATION_MAX_BISECTIONS):
        middle = 0.5 * (low + high)
        value = coverage_at(middle)
        remember(middle, value)
        if abs(value - target) <= CALIBRATION_TOLERANCE:
            break
        if value < target:
            low = middle
        else:
            high = middle
    logger.info(
        "calibrated sigma_scale=%.6g for target coverage %.4f (realised %.4f)",
        best_scale,
        target,
        best_coverage,
    )
    return best_scale, best_coverage


def sample_designs(
    mu: ArrayLike, variance: ArrayLike, n: int, space: DesignSpace, rng: np.random.Generator
) -> FloatArray:
    """n draws from the diagonal Gaussian, each coordinate clipped into the box (not rejected)."""
    mean = as_vector("mu", mu, space.dim)
    var = as_vector("variance", variance, space.dim)
    if np.any(var < 0.0):
        raise InputError(f"variance {var.tolist()} is negative; pass variances >= 0")
    n = _check_count("n", n, 0)
    draws = rng.normal(mean, np.sqrt(var), size=(n, space.dim))
    return space.clip(draws)


@dataclass(frozen=True)
class InitResult:
    """Everything the initial pec_state needs; ``strategy`` is "explicit" for given centres."""

    centers: FloatArray
    variances: FloatArray
    designs: list[FloatArray]
    sigma_scale: float
    target_coverage: float | None
    realized_coverage: float
    strategy: str
    seed: int


def _explicit_centers(K: int, centers: ArrayLike, space: DesignSpace) -> FloatArray:
    array = np.asarray(centers, dtype=np.float64)
    if array.shape != (K, space.dim):
        rows = "[GCR, spcf] pairs" if space.dim == 2 else "[GCR, spcf, leg] triples"
        raise InputError(f"centers has shape {array.shape}; pass exactly K={K} {rows}")
    array = space.points("centers", array)
    outside = ~space.contains(array)
    if np.any(outside):
        index = int(np.argmax(outside))
        raise InputError(
            f"centers[{index}]={array[index].tolist()} lies outside the design space "
            f"{space.describe()}; move it inside"
        )
    return array


def initialise_gaussians(
    K: int,
    space: DesignSpace,
    *,
    n_init: int,
    sigma_scale: float,
    seed: int,
    strategy: str = "stochastic_fps",
    centers: ArrayLike | None = None,
    init_pool_size: int = 10000,
    lloyd_iterations: int = 12,
    init_jitter_scale: float = 0.0,
    init_anchor_region: str | None = None,
    target_init_coverage: float | None = None,
    coverage_seed: int = 0,
) -> InitResult:
    """Place K Gaussians, size them (calibrating if asked) and draw n_init designs each.

    Without an explicit target, stochastic_fps is calibrated to the coverage the grid would
    have had, so switching strategy moves the centres without changing how much is covered.
    """
    K = _check_count("K", K, 1)
    n_init = _check_count("N_init", n_init, 1)
    scale = _check_positive("sigma_scale", sigma_scale)
    if strategy not in INIT_STRATEGIES:
        raise InputError(
            f"init_strategy={strategy!r} is unknown; use one of {list(INIT_STRATEGIES)}"
        )

    if centers is not None:
        center_array = _explicit_centers(K, centers, space)
        used_strategy = EXPLICIT_STRATEGY
    elif strategy == "grid":
        center_array = grid_centers(K, space)
        used_strategy = strategy
    else:
        center_array = stochastic_fps_centers(
            K,
            space,
            derive_seed(seed, "init-centers"),
            pool_size=init_pool_size,
            lloyd_iterations=lloyd_iterations,
            jitter_scale=init_jitter_scale,
            anchor=init_anchor_region,
        )
        used_strategy = strategy

    target: float | None
    if target_init_coverage is not None:
        target = float(target_init_coverage)
    elif used_strategy == "stochastic_fps":
        points = mc_points(space, coverage_seed)
        target = covered_fraction(
            points, grid_centers(K, space), initial_variances(K, space, scale)
        )
    else:
        target = None

    if target is None:
        variances = initial_variances(K, space, scale)
        realized = covered_fraction(mc_points(space, coverage_seed), center_array, variances)
    else:
        scale, realized = calibrate_sigma_scale(
            center_array, space, target, scale, coverage_seed=coverage_seed
        )
        variances = initial_variances(K, space, scale)

    designs = [
        sample_designs(
            center_array[k],
            variances[k],
            n_init,
            space,
            np.random.default_rng(derive_seed(seed, "init-designs", k)),
        )
        for k in range(K)
    ]
    logger.info(
        "initialised %d experts (%s), sigma_scale=%.6g, coverage=%.4f",
        K,
        used_strategy,
        scale,
        realized,
    )
    return InitResult(
        centers=center_array,
        variances=variances,
        designs=designs,
        sigma_scale=scale,
        target_coverage=target,
        realized_coverage=realized,
        strategy=used_strategy,
        seed=int(seed),
    )
