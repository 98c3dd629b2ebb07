"""Winner assignment and the Gaussian refit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pec.errors import InputError
from pec.maths.design_space import DesignSpace
from pec.maths.refit import assign_winners, fit_gaussian, refit_experts

NAN = math.nan


@pytest.fixture
def space() -> DesignSpace:
    return DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))


FLOOR = np.array([(0.01 * 0.14) ** 2, (0.01 * 0.009) ** 2])


def test_assign_winners_argmax_and_ties_to_lower_id() -> None:
    scores = [[1, 2, 2, 0], [2, 2, 1, 0], [2, 0, 2, 0]]
    assert assign_winners(scores).tolist() == [1, 0, 0, 0]


def test_assign_winners_excludes_nan_expert() -> None:
    scores: list[list[float]] = [[NAN, NAN, NAN], [0, 4, 1], [3, 4, 0]]
    # all-zero / tie columns go to the lowest *evaluated* id (1), never to expert 0.
    assert assign_winners(scores).tolist() == [2, 1, 1]


def test_assign_winners_rejects_unscored_candidate_and_inf() -> None:
    with pytest.raises(InputError, match="candidate 1"):
        assign_winners(np.array([[1, NAN], [2, NAN]]))
    with pytest.raises(InputError, match=r"expert 1.*candidate 0"):
        assign_winners(np.array([[1, 2], [math.inf, 0]]))


def test_fit_gaussian_mle_with_bessel(space: DesignSpace) -> None:
    designs = [[0.80, 0.002], [0.82, 0.004], [0.84, 0.009]]
    mu, var = fit_gaussian(designs, space, 0.01)
    np.testing.assert_allclose(mu, [0.82, 0.005])
    np.testing.assert_allclose(var, [4e-4, 13e-6])


def test_fit_gaussian_two_designs_uses_ddof_one(space: DesignSpace) -> None:
    _, var = fit_gaussian([[0.80, 0.002], [0.84, 0.006]], space, 0.01)
    np.testing.assert_allclose(var, [8e-4, 8e-6])  # ddof 0 would give half


def test_fit_gaussian_single_design_is_floored(space: DesignSpace) -> None:
    mu, var = fit_gaussian([[0.8, 0.005]], space, 0.01)
    np.testing.assert_array_equal(mu, [0.8, 0.005])
    np.testing.assert_allclose(var, FLOOR)
    _, wide_floor = fit_gaussian([[0.8, 0.005]], space, 0.1)
    np.testing.assert_allclose(wide_floor, FLOOR * 100)


def test_fit_gaussian_floor_per_axis(space: DesignSpace) -> None:
    _, var = fit_gaussian([[0.80, 0.005], [0.84, 0.005]], space, 0.01)
    np.testing.assert_allclose(var, [8e-4, FLOOR[1]])


def test_fit_gaussian_rejects_bad_input(space: DesignSpace) -> None:
    with pytest.raises(InputError, match="empty"):
        fit_gaussian(np.zeros((0, 2)), space, 0.01)
    with pytest.raises(InputError, match="min_var_scale"):
        fit_gaussian([[0.8, 0.005]], space, 0.0)


def _two_experts() -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    mus = np.array([[0.79, 0.003], [0.86, 0.008]])
    variances = np.array([[1e-4, 1e-6], [2e-4, 2e-6]])
    designs = [np.array([[0.78, 0.002], [0.80, 0.004]]), np.array([[0.86, 0.008]])]
    candidates = np.array([[0.79, 0.003], [0.88, 0.009], [0.77, 0.002]])
    return mus, variances, designs, candidates


def test_refit_appends_won_candidates_in_order_and_refits(space: DesignSpace) -> None:
    mus, variances, designs, candidates = _two_experts()
    result = refit_experts(mus, variances, designs, candidates, [[5, 1, 3], [5, 7, 3]], space)
    assert result.winners.tolist() == [0, 1, 0]
    assert result.won_counts == [2, 1]
    zero, one = result.experts
    np.testing.assert_array_equal(
        zero.designs, [[0.78, 0.002], [0.80, 0.004], [0.79, 0.003], [0.77, 0.002]]
    )
    assert zero.refitted
    np.testing.assert_allclose(zero.mu, [0.785, 0.00275])
    # GCR deviations -0.005, 0.015, 0.005, -0.015 -> 5e-4 / 3; spcf -0.00075, 0.00125,
    # 0.00025, -0.00075 -> 2.75e-6 / 3.
    np.testing.assert_allclose(zero.variance, [5e-4 / 3, 2.75e-6 / 3])
    np.testing.assert_array_equal(one.designs, [[0.86, 0.008], [0.88, 0.009]])
    np.testing.assert_allclose(one.mu, [0.87, 0.0085])
    np.testing.assert_allclose(one.variance, [2e-4, 5e-7])
    # inputs are not modified
    assert designs[0].shape == (2, 2)


def test_refit_skips_experts_below_min_designs(space: DesignSpace) -> None:
    mus, variances, designs, candidates = _two_experts()
    result = refit_experts(
        mus, variances, designs, candidates, [[5, 1, 3], [5, 7, 3]], space, min_designs=3
    )
    zero, one = result.experts
    assert zero.refitted and not one.refitted
    np.testing.assert_array_equal(one.mu, mus[1])
    np.testing.assert_array_equal(one.variance, variances[1])
    assert one.designs.shape == (2, 2)  # the won candidate is still recorded


def test_refit_nan_expert_wins_nothing_but_refits_its_designs(space: DesignSpace) -> None:
    mus, variances, designs, candidates = _two_experts()
    result = refit_experts(
        mus, variances, designs, candidates, np.array([[NAN] * 3, [0, 0, 0]]), space
    )
    assert result.winners.tolist() == [1, 1, 1]
    assert result.won_counts == [0, 3]
    zero = result.experts[0]
    np.testing.assert_array_equal(zero.designs, designs[0])
    np.testing.assert_allclose(zero.mu, [0.79, 0.003])
    np.testing.assert_allclose(zero.variance, [2e-4, 2e-6])


def test_refit_all_zero_scores_go_to_expert_zero(space: DesignSpace) -> None:
    mus, variances, designs, candidates = _two_experts()
    result = refit_experts(mus, variances, designs, candidates, np.zeros((2, 3)), space)
    assert result.winners.tolist() == [0, 0, 0]
    assert result.won_counts == [3, 0]


def test_refit_expert_without_designs_keeps_gaussian(space: DesignSpace) -> None:
    mus, variances, _, candidates = _two_experts()
    designs = [np.zeros((0, 2)), np.array([[0.86, 0.008]])]
    result = refit_experts(mus, variances, designs, candidates, [[0, 0, 0], [1, 1, 1]], space)
    assert not result.experts[0].refitted
    assert result.experts[0].designs.shape == (0, 2)
    np.testing.assert_array_equal(result.experts[0].mu, mus[0])


@pytest.mark.parametrize(
    ("scores", "message"),
    [
        ([[1, 2], [3, 4]], r"expected \(K=2, F=3\)"),
        ([[1, 2, 3], [3, math.inf, 4]], "expert 1.*candidate 1"),
        ([[1, NAN, 3], [3, 4, 4]], "expert 0.*candidate 1"),
        ([[NAN] * 3, [NAN] * 3], "candidate 0"),
    ],
)
def test_refit_rejects_bad_scores(
    space: DesignSpace, scores: list[list[float]], message: str
) -> None:
    mus, variances, designs, candidates = _two_experts()
    with pytest.raises(InputError, match=message):
        refit_experts(mus, variances, designs, candidates, scores, space)


def test_refit_rejects_design_list_mismatch(space: DesignSpace) -> None:
    mus, variances, designs, candidates = _two_experts()
    with pytest.raises(InputError, match="one per expert"):
        refit_experts(mus, variances, designs[:1], candidates, np.zeros((2, 3)), space)
