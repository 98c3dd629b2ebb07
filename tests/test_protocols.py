"""Evaluation protocols (pec.maths.protocols): the level search on scripted primitives, records."""

from __future__ import annotations

import numpy as np
import pytest

from pec.errors import ConfigError, InputError, JobError
from pec.jobs.spec import EvalJobSpec
from pec.maths.protocols import (
    ceiling,
    describe,
    level_search,
    refuse_unused_settings,
    same_protocol,
    search_rounds,
    unused_override_warnings,
)
from pec.runs.config import build_config


class ScriptedPrimitive:
    """Passes a design's probe exactly when the level is at or below its threshold."""

    def __init__(self, thresholds: list[int]) -> None:
        self.thresholds = np.asarray(thresholds)
        self.calls: list[tuple[list[int], list[int]]] = []

    def __call__(self, indices: np.ndarray, levels: np.ndarray) -> list[bool]:
        self.calls.append((indices.tolist(), levels.tolist()))
        return [bool(lv <= self.thresholds[i]) for i, lv in zip(indices, levels, strict=True)]


def test_search_finds_every_exact_threshold() -> None:
    thresholds = list(range(75))
    primitive = ScriptedPrimitive(thresholds)
    assert level_search(primitive, len(thresholds)) == thresholds
    # One batched call per round, at most 7 rounds for 75 levels, each design probed once a round.
    assert len(primitive.calls) == search_rounds(74) == 7
    for indices, levels in primitive.calls:
        assert indices == sorted(set(indices))
        assert all(0 <= lv <= 74 for lv in levels)


def test_failing_level_zero_scores_zero_and_the_ceiling_caps() -> None:
    primitive = ScriptedPrimitive([-1, 0, 12, 74])
    assert level_search(primitive, 4) == [0, 0, 12, 74]
    capped = ScriptedPrimitive([-1, 9, 10, 11, 74])
    assert level_search(capped, 5, search_max_level=10) == [0, 9, 10, 10, 10]
    assert all(lv <= 10 for _, levels in capped.calls for lv in levels)


def test_search_is_deterministic_for_a_deterministic_primitive() -> None:
    rng = np.random.default_rng(5)
    thresholds = rng.integers(-1, 75, size=40).tolist()
    first, second = ScriptedPrimitive(thresholds), ScriptedPrimitive(thresholds)
    assert level_search(first, 40) == level_search(second, 40)
    assert first.calls == second.calls


def test_a_primitive_that_answers_the_wrong_count_is_a_job_error() -> None:
    with pytest.raises(JobError, match="outcomes"):
        level_search(lambda idx, lv: [True], 3)


def test_ceiling_and_record_per_protocol() -> None:
    assert ceiling("final_level", 10, 0, 74) == 10
    assert ceiling("final_level", 20, 70, 74) == 74
    assert ceiling("level_search", 10, 0, 74) == 74
    assert describe("level_search", 10, 0, 40) == {
        "score": "level_search",
        "search_max_level": 40,
        "ceiling": 40,
    }
    assert describe("final_level", 10, 3, 74) == {
        "score": "final_level",
        "num_episodes": 10,
        "start_difficulty": 3,
        "ceiling": 13,
    }
    cfg = build_config({"score": "level_search"})
    assert cfg.protocol_record()["ceiling"] == 74


def test_a_record_holds_what_changes_the_scores_and_reuse_compares_exactly_that() -> None:
    searched = describe("level_search", 10, 0, 40, seed=7, backend="mujoco")
    assert searched == {
        "score": "level_search",
        "search_max_level": 40,
        "ceiling": 40,
        "seed": 7,
        "backend": "mujoco",
    }
    # final_level's settings do not define a level search: any values, the same protocol ...
    assert describe("level_search", 3, 9, 40, seed=7, backend="mujoco") == searched
    # ... also when an older version recorded them (or other keys, like scores.json's F).
    older = {**searched, "num_episodes": 10, "start_difficulty": 0, "F": 32, "K": 2}
    assert same_protocol(older, searched) and same_protocol(searched, older)
    # What does define it differs: the ceiling, the seed, the backend, the protocol.
    for changed in (
        describe("level_search", 10, 0, 41, seed=7, backend="mujoco"),
        describe("level_search", 10, 0, 40, seed=8, backend="mujoco"),
        describe("level_search", 10, 0, 40, seed=7, backend="isaaclab"),
        describe("final_level", 10, 0, 40, seed=7, backend="mujoco"),
    ):
        assert not same_protocol(changed, searched)
    # A record that lacks a defining key (no seed) is not taken for one that has it.
    assert not same_protocol({k: v for k, v in searched.items() if k != "seed"}, searched)
    assert not same_protocol(None, searched) and not same_protocol([searched], searched)
    # Under final_level the episodes and start level define the score; search_max_level not.
    original = describe("final_level", 10, 3, 74, seed=7)
    assert not same_protocol(describe("final_level", 11, 3, 74, seed=7), original)
    assert not same_protocol(describe("final_level", 10, 4, 74, seed=7), original)
    assert same_protocol({**original, "search_max_level": 12}, original)


def test_a_final_level_setting_given_under_level_search_is_refused_or_warned() -> None:
    given = {"num_episodes": None, "start_difficulty": 3}
    with pytest.raises(InputError) as err:
        refuse_unused_settings("level_search", given, 40, switch="--set score=final_level")
    assert str(err.value) == (
        "--start_difficulty: the level_search protocol does not use it (it searches levels "
        "0..40); drop --start_difficulty, or pass --set score=final_level to score the "
        "original's way"
    )
    refuse_unused_settings("final_level", given, 40)  # used there: nothing to refuse
    refuse_unused_settings("level_search", {"num_episodes": None}, 40)  # nothing given
    with pytest.raises(InputError, match=r"^num_episodes: .*; drop num_episodes, or pass score"):
        refuse_unused_settings("level_search", {"num_episodes": 2}, 74, flag="")
    # An override of the config is kept for final_level: a warning line per setting.
    lines = unused_override_warnings("level_search", {"num_episodes": 5, "F": 8}, 74)
    assert lines == [
        (
            "--set num_episodes=5: the level_search protocol does not use it (it searches "
            "levels 0..74); it is kept in the run's config and applies only when the run is "
            "scored with final_level"
        )
    ]
    assert unused_override_warnings("final_level", {"num_episodes": 5}, 74) == []


@pytest.mark.parametrize(
    ("key", "value"), [("score", "best"), ("search_max_level", 0), ("search_max_level", 75)]
)
def test_bad_protocol_settings_are_one_line_config_errors(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key) as err:
        build_config({key: value})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError):
        level_search(ScriptedPrimitive([1]), 1, search_max_level=75)


def test_eval_job_spec_carries_the_protocol() -> None:
    spec = EvalJobSpec.model_validate(
        {
            "backend": "mujoco",
            "store": {"location": "store"},
            "run_name": "r",
            "expert_id": 0,
            "iteration": 0,
            "checkpoint_uri": "file:///x.pt",
            "designs": [[0.8, 0.005]],
            "num_episodes": 1,
            "start_difficulty": 0,
            "score": "level_search",
            "search_max_level": 30,
            "seed": 0,
            "timeout_s": 10,
        }
    )
    assert spec.score == "level_search" and spec.search_max_level == 30


def test_frontier_competition_counts_ties_and_ceiling_winners() -> None:
    from pec.maths.protocols import frontier_competition

    stats = frontier_competition([[3, 5, 0, 10], None, [3, 7, 0, 2]], ceiling_level=10)
    assert stats["all_tied"] == 2  # candidates 0 and 2
    assert stats["winner_at_ceiling"] == 1  # candidate 3
    assert stats["wins_by_expert"] == {0: 3, 2: 1}  # ties go to the lower id
    assert stats["best_scores"] == [3, 7, 0, 10]
