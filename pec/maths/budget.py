"""How PEC splits its PPO budget: the trunk's share of iteration 0, and budget that follows wins.

Pure integer arithmetic, no I/O. Both rules keep the run's total PPO iterations exactly what
the original's equal split spends (K x max_iterations_iter0, then K x max_iterations per
iteration), so a run with a trunk or with `budget_rule: wins` costs the same env steps as one
without.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

BUDGET_RULES = ("equal", "wins", "proportional")


def trunk_split(K: int, iterations_iter0: int, share: float) -> tuple[int, int]:
    """(the trunk's PPO iterations, each expert's PPO iterations at iteration 0).

    The trunk takes ``share`` of iteration 0's budget (K x iterations_iter0): each expert
    keeps ``round((1 - share) x iterations_iter0)`` (at least 1) and the trunk gets the rest,
    ``K x (iterations_iter0 - expert)``, so the total never changes. A share too small to give
    the trunk a single PPO iteration means no trunk: (0, iterations_iter0).
    """
    if K < 1 or iterations_iter0 < 1:
        raise ValueError(f"K={K} and iterations_iter0={iterations_iter0} must be >= 1")
    if not 0.0 <= share < 1.0:
        raise ValueError(f"share={share} must lie in [0, 1)")
    expert = max(1, round((1.0 - share) * iterations_iter0))
    trunk = K * (iterations_iter0 - expert)
    if trunk <= 0:
        return 0, iterations_iter0
    return trunk, expert


def won_counts(scores: ArrayLike) -> list[int]:
    """Frontier candidates each expert won outright: its score above every other evaluated
    expert's. A (K, F) score matrix, NaN where an expert was not evaluated. A tie (all-zero
    candidates included) is nobody's win here, although the refit assigns it to the lower id:
    a tie says nothing about which expert deserves the budget."""
    matrix = np.asarray(scores, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"scores must be a (K, F) matrix, got shape {matrix.shape}")
    counts = [0] * matrix.shape[0]
    for column in matrix.T:
        scored = ~np.isnan(column)
        if not scored.any():
            continue
        best = np.max(column[scored])
        leaders = np.flatnonzero(scored & (column == best))
        if leaders.size == 1:
            counts[int(leaders[0])] += 1
    return counts


def budget_by_wins(won: Sequence[int], per_expert: int) -> list[int]:
    """PPO iterations per expert when budget follows wins.

    `won`: candidates won outright per expert (`won_counts`). An expert that won no frontier
    candidate gives its ``per_expert`` iterations to the experts
    that won at least one, split equally among them (the remainder one each to the lowest ids);
    the total stays ``K x per_expert``. When every expert won something, or none did (no
    evidence), the split is the original's equal one.
    """
    K = len(won)
    if per_expert < 1 or K < 1:
        raise ValueError(f"per_expert={per_expert} and K={K} must be >= 1")
    winners = [k for k, count in enumerate(won) if count > 0]
    if not winners or len(winners) == K:
        return [per_expert] * K
    base, extra = divmod(per_expert * K, len(winners))
    budget = [0] * K
    for i, k in enumerate(winners):
        budget[k] = base + (1 if i < extra else 0)
    return budget


def budget_by_share(won: Sequence[int], per_expert: int) -> list[int]:
    """PPO iterations per expert in proportion to its outright wins (`budget_rule:
    proportional`): the total ``K x per_expert`` split by largest remainders (ties of the
    remainder to the lower id), so an expert that won nothing gets 0. No wins at all (no
    evidence): the equal split."""
    K = len(won)
    if per_expert < 1 or K < 1:
        raise ValueError(f"per_expert={per_expert} and K={K} must be >= 1")
    if any(count < 0 for count in won):
        raise ValueError(f"won counts {list(won)} must be >= 0")
    wins = sum(won)
    if wins == 0:
        return [per_expert] * K
    total = per_expert * K
    budget = [total * count // wins for count in won]
    remainders = sorted(range(K), key=lambda k: (-(total * won[k] % wins), k))
    for k in remainders[: total - sum(budget)]:
        budget[k] += 1
    return budget
