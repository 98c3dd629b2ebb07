"""What a final evaluation's score matrix says: the oracle, the routed robot, PEC against the generalist.

The reference sheet only reports the per-design oracle (best expert with hindsight). A robot
in the field gets the expert chosen by nearest-centre routing, so the summary carries both,
side by side, from the same score matrix; `compare_scores` counts PEC's wins, ties and losses
against the generalist on the same designs. Pure: arrays in, arrays out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from pec.errors import InputError
from pec.maths.design_space import DesignSpace, FloatArray, IntArray
from pec.maths.refit import assign_winners
from pec.maths.routing import route


@dataclass(frozen=True)
class ScoreSummary:
    """The final-evaluation numbers of one run on one designs set.

    ``scores`` is (K, N) with NaN rows for experts that could not be evaluated; every
    per-design array has length N, expert indices are expert ids.
    """

    scores: FloatArray
    evaluated: list[int]
    oracle: FloatArray
    oracle_expert: IntArray
    routed_expert: IntArray
    routed: FloatArray

    @property
    def oracle_mean(self) -> float:
        return float(np.mean(self.oracle))

    @property
    def routed_mean(self) -> float:
        return float(np.mean(self.routed))

    def expert_means(self) -> list[float | None]:
        return [
            None if k not in self.evaluated else float(np.mean(self.scores[k]))
            for k in range(self.scores.shape[0])
        ]

    @property
    def routed_hits(self) -> int:
        """Designs where the routed expert scores as well as the oracle (ties count as hits)."""
        return int(np.sum(self.routed == self.oracle))


def as_score_matrix(scores: ArrayLike) -> FloatArray:
    """(K, N) float matrix; NaN marks an expert that was not evaluated (a whole row)."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise InputError(
            f"score matrix has shape {matrix.shape}; pass (K, N): one row per expert, "
            "one column per design"
        )
    if np.any(np.isinf(matrix)):
        raise InputError("score matrix holds infinite values; scores are final levels 0..74")
    partial = np.isnan(matrix).any(axis=1) & ~np.isnan(matrix).all(axis=1)
    if partial.any():
        k = int(np.argmax(partial))
        raise InputError(
            f"scores of expert {k} are missing for some designs only; an expert is evaluated "
            "on every design or on none (null row)"
        )
    return matrix


def summarise_scores(
    scores: ArrayLike, designs: ArrayLike, mus: ArrayLike, space: DesignSpace
) -> ScoreSummary:
    """Oracle (best expert per design, ties to the lower id) and routed score per design.

    Routing considers only the experts that were evaluated: a deployed bundle can only hold
    experts that have a policy, so a design is routed to the nearest centre among those.
    """
    matrix = as_score_matrix(scores)
    points = space.points("designs", designs)
    centres = space.points("mus", mus, allow_empty=False)
    K, N = matrix.shape
    if points.shape[0] != N:
        raise InputError(f"{points.shape[0]} designs but the score matrix has {N} columns")
    if centres.shape[0] != K:
        raise InputError(f"{centres.shape[0]} centres but the score matrix has {K} expert rows")
    evaluated = [k for k in range(K) if not np.isnan(matrix[k]).any()]
    if not evaluated:
        raise InputError("no expert was evaluated (every score row is null); nothing to summarise")
    oracle_expert = assign_winners(matrix)
    oracle = matrix[oracle_expert, np.arange(N)]
    ids = np.asarray(evaluated, dtype=np.int64)
    routed_expert: IntArray = ids[route(points, centres[ids], space)]
    routed = matrix[routed_expert, np.arange(N)]
    return ScoreSummary(
        scores=matrix,
        evaluated=evaluated,
        oracle=oracle,
        oracle_expert=oracle_expert.astype(np.int64),
        routed_expert=routed_expert,
        routed=routed,
    )


@dataclass(frozen=True)
class Comparison:
    """PEC against the generalist on the same designs (`diff` = PEC − baseline)."""

    diff: FloatArray
    wins: int
    ties: int
    losses: int
    wins_by_expert: dict[int, int]  # which expert earned each win

    @property
    def mean_diff(self) -> float:
        return float(np.mean(self.diff))


def compare_scores(pec: ArrayLike, baseline: ArrayLike, pec_expert: ArrayLike) -> Comparison:
    """Win/tie/loss of PEC per design, and the expert behind every win."""
    p = np.asarray(pec, dtype=np.float64).reshape(-1)
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    e = np.asarray(pec_expert, dtype=np.int64).reshape(-1)
    if not p.shape == b.shape == e.shape:
        raise InputError(
            f"PEC ({p.size}), baseline ({b.size}) and expert ({e.size}) arrays differ in length; "
            "compare scores of the same designs"
        )
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(b))):
        raise InputError("scores must be finite to compare; evaluate every design")
    diff = p - b
    win = diff > 0
    wins_by_expert: dict[int, int] = {}
    for k in e[win].tolist():
        wins_by_expert[int(k)] = wins_by_expert.get(int(k), 0) + 1
    return Comparison(
        diff=diff,
        wins=int(np.sum(win)),
        ties=int(np.sum(diff == 0)),
        losses=int(np.sum(diff < 0)),
        wins_by_expert=dict(sorted(wins_by_expert.items())),
    )


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is 0 (a ratio would be meaningless)."""
    if denominator == 0 or not math.isfinite(denominator):
        return None
    return numerator / denominator
