"""Obstacle levels: heights, the per-episode rule and the starting level dl."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pec.errors import InputError
from pec.maths.curriculum import MAX_LEVEL, NUM_LEVELS, level_height, next_levels, starting_level


def test_constants() -> None:
    assert NUM_LEVELS == 75 and MAX_LEVEL == 74


def test_level_height() -> None:
    assert level_height(0) == pytest.approx(0.001)
    assert level_height(28) == pytest.approx(0.281)
    assert level_height(74) == pytest.approx(0.741)
    assert isinstance(level_height(3), float)
    np.testing.assert_allclose(level_height(np.array([0, 1, 10])), [0.001, 0.011, 0.101])
    with pytest.raises(InputError, match="outside"):
        level_height(75)
    with pytest.raises(InputError, match="outside"):
        level_height(np.array([-1, 2]))


def test_next_levels_rule_and_clip() -> None:
    levels = np.array([0, 0, 5, 74, 74, 10, 3, 7])
    root_x = np.array([0.4, 1.2, 0.7, 1.5, 0.2, 1.0, 0.5, math.nan])
    result = next_levels(levels, root_x)
    # x=1.0 is not > 1 and x=0.5 is not < 0.5: both unchanged; NaN leaves the level alone.
    assert result.tolist() == [0, 1, 5, 74, 73, 10, 3, 7]
    assert result.dtype == np.int64


def test_next_levels_custom_thresholds_and_validation() -> None:
    assert next_levels([5, 5], [0.9, 0.1], promote_x=0.8, demote_x=0.2).tolist() == [6, 4]
    with pytest.raises(InputError, match="shape"):
        next_levels([1, 2], [0.1])
    with pytest.raises(InputError, match="whole numbers"):
        next_levels([1.5], [0.1])
    with pytest.raises(InputError, match="promote_x"):
        next_levels([1], [0.1], promote_x=0.5, demote_x=0.5)


def test_starting_level_formula() -> None:
    assert starting_level([10, 11, 12.9], dl_initial=0, dl_buffer=2) == 9  # floor(11.3) - 2
    assert starting_level([5, 5], dl_initial=0, dl_buffer=2) == 3
    assert starting_level([1, 2], dl_initial=4, dl_buffer=2) == 0  # max(0, 1 - 2)
    assert starting_level(np.array([30.0, 31.0]), dl_initial=0, dl_buffer=0) == 30


def test_starting_level_missing_scores_use_dl_initial() -> None:
    assert starting_level(None, dl_initial=3, dl_buffer=2) == 3
    assert starting_level([], dl_initial=3, dl_buffer=2) == 3
    assert starting_level([math.nan, math.nan], dl_initial=5, dl_buffer=2) == 5


def test_starting_level_validation() -> None:
    with pytest.raises(InputError, match="NaN"):
        starting_level([3, math.nan], dl_initial=0, dl_buffer=2)
    with pytest.raises(InputError, match="dl_buffer"):
        starting_level([3], dl_initial=0, dl_buffer=-1)
    with pytest.raises(InputError, match="dl_initial"):
        starting_level(None, dl_initial=80, dl_buffer=2)
