"""Evaluation protocols: how a policy's score on a design is measured, written once.

Two protocols, named by the config key `score`:

- ``final_level`` (the original's): every design starts at `start_difficulty` and plays
  `num_episodes` episodes under the curriculum rule; the score is the level after the last
  one. It can never exceed ``start_difficulty + num_episodes`` (its *ceiling*), so a good
  policy saturates it and experts tie.
- ``level_search``: the highest obstacle level the policy passes on the design, found by a
  bisection over the levels ``0 .. search_max_level``. Each probe is one deterministic
  episode at one level (the backend primitive ``probe_levels``); it passes when the
  curriculum's level-up condition held at the episode's end. The search assumes that a
  policy that passes level L also passes the levels below (it probes about
  log2(search_max_level + 2) levels instead of stepping through all of them). Score 0 means
  "passes at most level 0" (a policy that fails level 0 also scores 0). Ceiling:
  `search_max_level`, by default the top level 74, so it cannot saturate below the
  curriculum's cap.

Everything here is pure: the search drives a `Probe` callback and never touches a
simulator, so every backend gets the protocol by implementing the one primitive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from pec.errors import ConfigError, JobError

MAX_LEVEL = 74  # the curriculum's top level (pec.maths.curriculum.MAX_LEVEL; no torch import here)

ScoreName = Literal["final_level", "level_search"]
SCORE_NAMES: tuple[str, ...] = ("final_level", "level_search")

# (design indices, one level per index) -> one "passed" flag per index, in order.
Probe = Callable[[NDArray[np.int64], NDArray[np.int64]], list[bool]]


def ceiling(score: str, num_episodes: int, start_difficulty: int, search_max_level: int) -> int:
    """The highest score the protocol can report."""
    if score == "final_level":
        return min(MAX_LEVEL, start_difficulty + num_episodes)
    if score == "level_search":
        return search_max_level
    raise ConfigError(f"score={score!r} is unknown; choose one of {', '.join(SCORE_NAMES)}")


def describe(
    score: str, num_episodes: int, start_difficulty: int, search_max_level: int
) -> dict[str, Any]:
    """The protocol record written into scores.json, summary.json and result files."""
    record: dict[str, Any] = {"score": score}
    if score == "final_level":
        record.update(num_episodes=num_episodes, start_difficulty=start_difficulty)
    else:
        record.update(search_max_level=search_max_level)
    record["ceiling"] = ceiling(score, num_episodes, start_difficulty, search_max_level)
    return record


def check_search_max_level(value: int) -> int:
    """search_max_level must be a level the curriculum has, above 0."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"search_max_level={value!r}: pass a whole level in 1..{MAX_LEVEL}")
    if not 1 <= int(value) <= MAX_LEVEL:
        raise ConfigError(f"search_max_level={value} is outside 1..{MAX_LEVEL}; pick a level there")
    return int(value)


def search_rounds(search_max_level: int) -> int:
    """How many probes the bisection needs at most per design."""
    span = check_search_max_level(search_max_level) + 2  # open interval (-1, max + 1)
    rounds = 0
    while span > 1:
        span = (span + 1) // 2  # the larger half of the open interval after one probe
        rounds += 1
    return rounds


def level_search(probe: Probe, n_designs: int, search_max_level: int = MAX_LEVEL) -> list[int]:
    """Highest passed level per design, by bisection over 0..search_max_level.

    Per design the search keeps ``passed`` (highest level known passed, -1 at first) and
    ``failed`` (lowest level known failed, search_max_level + 1 at first: unknown above the
    ceiling) and probes the middle until they are adjacent. Every round probes all
    unfinished designs in one call, in ascending design order, so a backend runs them as
    parallel environments and the result is deterministic for a deterministic probe.
    """
    top = check_search_max_level(search_max_level)
    if n_designs < 1:
        raise ConfigError(f"level_search needs at least one design, got {n_designs}")
    passed = np.full(n_designs, -1, dtype=np.int64)
    failed = np.full(n_designs, top + 1, dtype=np.int64)
    for _ in range(search_rounds(top)):
        active = np.nonzero(failed - passed > 1)[0].astype(np.int64)
        if active.size == 0:
            break
        levels = (passed[active] + failed[active]) // 2
        outcome = probe(active, levels)
        if len(outcome) != active.size:
            raise JobError(
                f"probe returned {len(outcome)} outcomes for {active.size} designs; "
                "the backend must answer one pass/fail per design"
            )
        ok = np.asarray([bool(v) for v in outcome], dtype=bool)
        passed[active[ok]] = levels[ok]
        failed[active[~ok]] = levels[~ok]
    if np.any(failed - passed > 1):  # cannot happen: search_rounds bounds the bisection
        raise JobError("level_search did not converge; report this as a bug")
    return [int(v) for v in np.maximum(passed, 0)]


def frontier_competition(rows: list[list[int] | None], ceiling_level: int) -> dict[str, Any]:
    """How much the experts competed on one frontier evaluation (rows: K lists of F scores).

    `all_tied`: candidates where every evaluated expert scored the same (the refit then
    decides by id, not by skill); `winner_at_ceiling`: candidates whose best score equals the
    protocol's ceiling (the score could not tell how much better the winner was).
    """
    evaluated = [row for row in rows if row is not None]
    if not evaluated:
        raise ConfigError("no expert was evaluated; nothing to compare")
    matrix = np.asarray(evaluated, dtype=np.int64)
    best = matrix.max(axis=0)
    winners = np.asarray([k for k, row in enumerate(rows) if row is not None])[
        matrix.argmax(axis=0)
    ]
    return {
        "candidates": int(matrix.shape[1]),
        "all_tied": int(np.sum(np.all(matrix == matrix[0], axis=0))),
        "winner_at_ceiling": int(np.sum(best == ceiling_level)),
        "wins_by_expert": {int(k): int(np.sum(winners == k)) for k in np.unique(winners)},
        "best_scores": [int(v) for v in best],
    }
