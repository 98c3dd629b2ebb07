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

A recorded protocol (`describe`) holds only what changes a score: the protocol, its own
settings, its ceiling, and the seed and backend where the record names them. Under
level_search, `num_episodes` and `start_difficulty` are final_level's settings: a config file
may hold them (they apply when the run is scored with final_level), but a command-line flag
that sets them is refused (`refuse_unused_settings`), a ``--set`` of them draws a warning
(`unused_override_warnings`), and two records are the same protocol when they agree on what
defines it (`same_protocol`), whatever unused keys an older version also wrote.

Everything here is pure: the search drives a `Probe` callback and never touches a
simulator, so every backend gets the protocol by implementing the one primitive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from pec.errors import ConfigError, InputError, JobError
from pec.maths.curriculum import MAX_LEVEL

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


# What each protocol's score depends on, besides the policy, the designs and the seed.
SETTINGS: dict[str, tuple[str, ...]] = {
    "final_level": ("num_episodes", "start_difficulty"),
    "level_search": ("search_max_level",),
}
# Recorded next to the settings when the record names them: they change results too.
RUN_KEYS: tuple[str, ...] = ("seed", "backend")


def describe(
    score: str,
    num_episodes: int,
    start_difficulty: int,
    search_max_level: int,
    *,
    seed: int | None = None,
    backend: str | None = None,
) -> dict[str, Any]:
    """The protocol record written into scores.json, summary.json and result files: the
    score, its own settings only (`SETTINGS`), its ceiling, and `seed`/`backend` when given."""
    values = {
        "num_episodes": num_episodes,
        "start_difficulty": start_difficulty,
        "search_max_level": search_max_level,
    }
    ceiling_level = ceiling(score, num_episodes, start_difficulty, search_max_level)
    record: dict[str, Any] = {"score": score}
    record.update({name: values[name] for name in SETTINGS[score]})
    record["ceiling"] = ceiling_level
    for name, value in (("seed", seed), ("backend", backend)):
        if value is not None:
            record[name] = value
    return record


def defining(record: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a recorded protocol that change its scores (`describe`'s keys); keys a
    protocol does not use (final_level's settings under level_search, written by older
    versions) and keys about something else (F, K, sampling_mode) are left out."""
    names = ("score", *SETTINGS.get(str(record.get("score")), ()), "ceiling", *RUN_KEYS)
    return {name: record[name] for name in names if name in record}


def same_protocol(recorded: Any, expected: Mapping[str, Any]) -> bool:
    """Whether a stored result's protocol record is `expected`'s protocol: the same score,
    settings, ceiling, seed and backend (a missing one differs; unused extra keys do not)."""
    return isinstance(recorded, Mapping) and defining(recorded) == defining(expected)


def unused_setting_message(name: str, search_max_level: int, flag: str, switch: str) -> str:
    """The one line for a final_level setting given under level_search (`flag` + `name` is
    how the user gave it, `switch` how they would choose final_level instead)."""
    return (
        f"{flag}{name}: the level_search protocol does not use it (it searches levels "
        f"0..{search_max_level}); drop {flag}{name}, or pass {switch} to score the original's way"
    )


def refuse_unused_settings(
    score: str,
    given: Mapping[str, object | None],
    search_max_level: int,
    flag: str = "--",
    switch: str | None = None,
) -> None:
    """Refuse, with one InputError line, an explicit final_level setting (`given`: name ->
    value, None = not given) when the protocol is level_search, where it would be ignored."""
    if score != "level_search":
        return
    for name in SETTINGS["final_level"]:
        if given.get(name) is not None:
            chosen = f"{flag}score final_level" if switch is None else switch
            raise InputError(unused_setting_message(name, search_max_level, flag, chosen))


def unused_override_warnings(
    score: str, overrides: Mapping[str, Any], search_max_level: int, source: str = "--set "
) -> list[str]:
    """One warning line per config override of a final_level setting under level_search.

    An override edits the run's config, like the config file's own `num_episodes`: it is
    kept and applies when the run is scored with final_level, so it is not an error; but
    nothing it could change runs now, which the user who typed it should hear.
    """
    if score != "level_search":
        return []
    return [
        f"{source}{name}={overrides[name]}: the level_search protocol does not use it (it "
        f"searches levels 0..{search_max_level}); it is kept in the run's config and applies "
        "only when the run is scored with final_level"
        for name in SETTINGS["final_level"]
        if name in overrides
    ]


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
