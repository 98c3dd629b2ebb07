"""Score-informed routing: pick the expert the run's own evaluations say is best near a design.

Nearest centre (`pec.maths.routing.route`, the spec's rule) only looks at the Gaussians. Every
frontier and final evaluation of a run, however, measured each expert on concrete designs.
This router predicts each expert's score at a design by inverse-distance weighting of that
expert's scores on the `neighbours` nearest evaluated designs (distances in the normalised
unit square), and routes to the expert with the highest prediction:

    predicted_k(x) = sum_j w_j s_jk / sum_j w_j,   w_j = 1 / (|x - e_j| + DISTANCE_FLOOR)

over the `neighbours` evaluated designs e_j nearest x among those expert k was scored on.
Ties (within TIE_TOLERANCE) go to the nearest-centre choice when it is among the tied
experts, else to the lowest id; a design with no evidence at all is routed to the nearest
centre. Pure numpy, deterministic. Each prediction is summed one neighbour at a time, nearest
first, so that the deployable twin of this rule, the TorchScript router of a policy bundle
(`pec.evaluation.bundle.TorchRouter`), repeats the same float64 operations and picks exactly
the same experts (tests/test_bundle.py checks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pec.errors import InputError
from pec.maths.design_space import DesignSpace, FloatArray, IntArray
from pec.maths.routing import route

DEFAULT_NEIGHBOURS = 8
DISTANCE_FLOOR = 1e-3  # unit-square distance: a design on top of evidence still averages
TIE_TOLERANCE = 1e-9
ROUTERS: tuple[str, ...] = ("nearest_centre", "score_informed")


@dataclass(frozen=True)
class ScoreEvidence:
    """Evaluated designs and every expert's score on them (NaN: expert not evaluated there)."""

    designs: FloatArray  # (m, d) physical [GCR, spcf(, leg)]
    scores: FloatArray  # (m, K)

    @property
    def size(self) -> int:
        return int(self.designs.shape[0])

    def to_json(self) -> dict[str, list[list[float | None]]]:
        return {
            "designs": [[float(v) for v in row] for row in self.designs],
            "scores": [[None if np.isnan(v) else float(v) for v in row] for row in self.scores],
        }

    @staticmethod
    def from_json(data: object, K: int, dim: int = 2) -> ScoreEvidence:
        if not isinstance(data, dict):
            raise InputError("score evidence must be a mapping with 'designs' and 'scores'")
        designs = data.get("designs") or []
        if not designs:
            return evidence_from([], K, dim)
        scores = [[np.nan if v is None else v for v in row] for row in data.get("scores") or []]
        matrix = np.asarray(scores, dtype=np.float64).reshape(-1, K).T
        return evidence_from([(designs, matrix)], K, dim)


def evidence_from(
    evaluations: Sequence[tuple[ArrayLike, Any]], K: int, dim: int = 2
) -> ScoreEvidence:
    """Stack evaluations, each (designs (m, d), scores (K, m) with None/NaN rows), into one."""
    designs: list[FloatArray] = []
    scores: list[FloatArray] = []
    for points, matrix in evaluations:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, dim)
        rows = list(matrix)
        if len(rows) != K:
            raise InputError(f"an evaluation has {len(rows)} score rows for K={K} experts")
        block = np.full((pts.shape[0], K), np.nan)
        for k, row in enumerate(rows):
            if row is None:
                continue
            values = np.asarray(row, dtype=np.float64).reshape(-1)
            if values.shape[0] != pts.shape[0]:
                raise InputError(
                    f"expert {k}: {values.shape[0]} scores for {pts.shape[0]} evaluated designs"
                )
            block[:, k] = values
        designs.append(pts)
        scores.append(block)
    if not designs:
        return ScoreEvidence(np.zeros((0, dim)), np.zeros((0, K)))
    return ScoreEvidence(np.concatenate(designs), np.concatenate(scores))


def predict_scores(
    designs: ArrayLike,
    evidence: ScoreEvidence,
    space: DesignSpace,
    neighbours: int = DEFAULT_NEIGHBOURS,
) -> FloatArray:
    """(n, K) predicted score per design and expert; NaN where an expert has no evidence."""
    if neighbours < 1:
        raise InputError(f"neighbours={neighbours}; pass at least 1")
    points = space.normalize(space.points("designs", designs))
    K = evidence.scores.shape[1]
    prediction = np.full((points.shape[0], K), np.nan)
    if evidence.size == 0:
        return prediction
    known = space.normalize(evidence.designs)
    diff = points[:, None, :] - known[None, :, :]
    squared = diff[:, :, 0] * diff[:, :, 0]
    for axis in range(1, space.dim):  # axis by axis, in order: d = 2 sums as it always did
        squared = squared + diff[:, :, axis] * diff[:, :, axis]
    distance = np.sqrt(squared)
    for k in range(K):
        valid = np.nonzero(~np.isnan(evidence.scores[:, k]))[0]
        if valid.size == 0:
            continue
        d = distance[:, valid]
        take = min(neighbours, valid.size)
        # Stable order: equal distances keep the evidence order (deterministic).
        nearest = np.argsort(d, axis=1, kind="stable")[:, :take]
        weights = 1.0 / (np.take_along_axis(d, nearest, axis=1) + DISTANCE_FLOOR)
        values = evidence.scores[valid][nearest, k]
        total = np.zeros(points.shape[0])
        weight = np.zeros(points.shape[0])
        for j in range(take):  # nearest first, in this order (see the module docstring)
            total = total + weights[:, j] * values[:, j]
            weight = weight + weights[:, j]
        prediction[:, k] = total / weight
    return prediction


def route_by_scores(
    designs: ArrayLike,
    evidence: ScoreEvidence,
    mus: ArrayLike,
    space: DesignSpace,
    neighbours: int = DEFAULT_NEIGHBOURS,
) -> IntArray:
    """(n,) expert id per design: highest predicted score; ties/no evidence -> nearest centre."""
    points = space.points("designs", designs)
    fallback = route(points, mus, space)
    prediction = predict_scores(points, evidence, space, neighbours)
    chosen = fallback.copy()
    for i in range(points.shape[0]):
        row = prediction[i]
        if np.all(np.isnan(row)):
            continue
        best = np.nanmax(row)
        tied = np.nonzero(row >= best - TIE_TOLERANCE)[0]
        chosen[i] = fallback[i] if fallback[i] in tied else int(tied[0])
    return chosen


def check_router(name: str) -> str:
    if name not in ROUTERS:
        raise InputError(f"router {name!r} is unknown; choose one of {', '.join(ROUTERS)}")
    return name
