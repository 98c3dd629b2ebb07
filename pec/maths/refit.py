"""Give each frontier candidate to the expert that scored best on it, then refit.

Each expert's Gaussian becomes the diagonal MLE of all its designs (its initial anchors
plus every candidate it has won), floored so that no expert collapses to a point.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from pec.errors import InputError
from pec.maths.design_space import DesignSpace, FloatArray, IntArray, as_gaussians

logger = logging.getLogger(__name__)


def _as_scores(scores: ArrayLike) -> FloatArray:
    array = np.asarray(scores, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1:
        raise InputError(
            f"scores has shape {array.shape}; pass a (K, F) matrix, one row per expert"
        )
    infinite = np.isinf(array)
    if np.any(infinite):
        expert, candidate = (int(i) for i in np.argwhere(infinite)[0])
        raise InputError(
            f"scores[expert {expert}][candidate {candidate}] is infinite; "
            "scores must be final levels (or null for an expert that was not evaluated)"
        )
    return array


def assign_winners(scores: ArrayLike) -> IntArray:
    """(F,) winning expert per candidate: highest score, ties to the lower id, NaN excluded.

    A candidate that every expert scored 0 on therefore goes to the lowest evaluated id,
    as in the original.
    """
    array = _as_scores(scores)
    missing = np.isnan(array)
    unscored = np.all(missing, axis=0)
    if np.any(unscored):
        candidate = int(np.argmax(unscored))
        raise InputError(
            f"candidate {candidate} has no score from any expert; "
            "evaluate at least one expert before refitting"
        )
    # argmax returns the first maximum, which is the lower expert id on ties.
    winners: IntArray = np.argmax(np.where(missing, -np.inf, array), axis=0).astype(np.int64)
    return winners


@dataclass(frozen=True)
class ExpertFit:
    """One expert after refit; ``refitted`` is False when it had too few designs to refit."""

    mu: FloatArray
    variance: FloatArray
    designs: FloatArray
    refitted: bool


@dataclass(frozen=True)
class RefitResult:
    """Refitted experts (by id), the winner of each candidate and each expert's number of wins."""

    experts: list[ExpertFit]
    winners: IntArray
    won_counts: list[int]


def fit_gaussian(
    designs: ArrayLike, space: DesignSpace, min_var_scale: float
) -> tuple[FloatArray, FloatArray]:
    """Diagonal MLE (mean, variance) with Bessel's correction and a per-axis variance floor.

    ddof drops to 0 for a single design (ddof 1 would divide by zero); the floor
    (min_var_scale x range_d)^2 then keeps the Gaussian from collapsing.
    """
    array = space.points("designs", designs, allow_empty=False)
    scale = float(min_var_scale)
    if not (math.isfinite(scale) and scale > 0.0):
        raise InputError(f"min_var_scale={min_var_scale!r} is invalid; pass a float > 0")
    mean: FloatArray = array.mean(axis=0)
    ddof = 1 if array.shape[0] > 1 else 0
    variance: FloatArray = np.maximum(array.var(axis=0, ddof=ddof), (scale * space.ranges) ** 2)
    return mean, variance


def refit_experts(
    mus: ArrayLike,
    variances: ArrayLike,
    designs: Sequence[ArrayLike],
    candidates: ArrayLike,
    scores: ArrayLike,
    space: DesignSpace,
    *,
    min_var_scale: float = 0.01,
    min_designs: int = 2,
) -> RefitResult:
    """Append won candidates (in candidate order) to each winner's designs, then refit.

    Experts with fewer than min_designs designs keep their Gaussian unchanged. An expert
    that was not evaluated has a row of NaN in ``scores`` and wins nothing.
    """
    mu_array, var_array = as_gaussians(mus, variances)
    K = mu_array.shape[0]
    if len(designs) != K:
        raise InputError(f"designs has {len(designs)} lists for {K} experts; pass one per expert")
    if mu_array.shape[1] != space.dim:
        raise InputError(
            f"mus have {mu_array.shape[1]} axes but the design space has {space.dim} "
            f"({', '.join(space.keys)}); pass Gaussians of this space"
        )
    design_arrays = [space.points(f"designs of expert {k}", d) for k, d in enumerate(designs)]
    candidate_array = space.points("candidates", candidates)
    F = candidate_array.shape[0]
    score_array = _as_scores(scores)
    if score_array.shape != (K, F):
        raise InputError(
            f"scores has shape {score_array.shape}; expected (K={K}, F={F}) to match "
            "the experts and candidates"
        )
    missing = np.isnan(score_array)
    partial = missing.any(axis=1) & ~missing.all(axis=1)
    if np.any(partial):
        expert = int(np.argmax(partial))
        candidate = int(np.argmax(missing[expert]))
        raise InputError(
            f"scores[expert {expert}][candidate {candidate}] is missing while the expert has "
            "other scores; give all F levels or null for the whole expert"
        )
    if isinstance(min_designs, bool) or not isinstance(min_designs, int | np.integer):
        raise InputError(f"min_designs={min_designs!r} is invalid; pass an integer >= 1")
    if min_designs < 1:
        raise InputError(f"min_designs={min_designs!r} is invalid; pass an integer >= 1")

    winners = assign_winners(score_array) if F > 0 else np.zeros(0, dtype=np.int64)
    experts: list[ExpertFit] = []
    won_counts: list[int] = []
    for k in range(K):
        won = candidate_array[winners == k]
        all_designs = np.concatenate([design_arrays[k], won], axis=0)
        won_counts.append(int(won.shape[0]))
        if all_designs.shape[0] >= min_designs:
            mu, variance = fit_gaussian(all_designs, space, min_var_scale)
            experts.append(ExpertFit(mu, variance, all_designs, refitted=True))
        else:
            logger.info(
                "expert %d has %d designs (< min_designs=%d); keeping its Gaussian",
                k,
                all_designs.shape[0],
                min_designs,
            )
            experts.append(
                ExpertFit(mu_array[k].copy(), var_array[k].copy(), all_designs, refitted=False)
            )
    return RefitResult(experts=experts, winners=winners, won_counts=won_counts)
