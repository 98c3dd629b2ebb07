"""Score-informed routing (pec.maths.score_routing): exact on hand-made evaluations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pec.errors import InputError
from pec.maths.design_space import DesignSpace
from pec.maths.score_routing import (
    DISTANCE_FLOOR,
    evidence_from,
    predict_scores,
    route_by_scores,
)

UNIT = DesignSpace(gcr=(0.0, 1.0), spcf=(0.0, 1.0))
# Expert 0 sits top-right but scored best bottom-left; expert 1 the other way round.
MUS = [[0.9, 0.9], [0.1, 0.1]]
EVIDENCE = evidence_from([([[0.1, 0.1], [0.9, 0.9]], [[5, 0], [1, 7]])], K=2)


def test_prediction_is_the_inverse_distance_weighted_mean() -> None:
    predicted = predict_scores([[0.2, 0.2]], EVIDENCE, UNIT, neighbours=2)
    w_near = 1.0 / (math.hypot(0.1, 0.1) + DISTANCE_FLOOR)
    w_far = 1.0 / (math.hypot(0.7, 0.7) + DISTANCE_FLOOR)
    expected = [(5 * w_near) / (w_near + w_far), (1 * w_near + 7 * w_far) / (w_near + w_far)]
    np.testing.assert_allclose(predicted[0], expected, rtol=0, atol=1e-12)
    # One neighbour: exactly the nearest evaluated design's scores.
    np.testing.assert_array_equal(
        predict_scores([[0.3, 0.2], [0.7, 0.95]], EVIDENCE, UNIT, 1), [[5, 1], [0, 7]]
    )


def test_routes_to_the_expert_that_scored_best_nearby_not_the_nearest_centre() -> None:
    designs = [[0.2, 0.2], [0.8, 0.8]]
    assert route_by_scores(designs, EVIDENCE, MUS, UNIT).tolist() == [0, 1]


def test_ties_and_missing_evidence_fall_back_to_the_nearest_centre() -> None:
    tied = evidence_from([([[0.5, 0.5]], [[3], [3]])], K=2)
    assert route_by_scores([[0.2, 0.2], [0.8, 0.8]], tied, MUS, UNIT).tolist() == [1, 0]
    empty = evidence_from([], K=2)
    assert route_by_scores([[0.2, 0.2]], empty, MUS, UNIT).tolist() == [1]
    # An expert never evaluated (null row) is never predicted, so never chosen over one that was.
    partial = evidence_from([([[0.1, 0.1]], [None, [0]])], K=2)
    assert np.isnan(predict_scores([[0.9, 0.9]], partial, UNIT)[0, 0])
    assert route_by_scores([[0.9, 0.9]], partial, MUS, UNIT).tolist() == [1]


def test_evidence_of_several_evaluations_is_stacked_in_order() -> None:
    evidence = evidence_from(
        [([[0.1, 0.1]], [[1], [2]]), ([[0.5, 0.5], [0.6, 0.6]], [[3, 4], None])], K=2
    )
    np.testing.assert_array_equal(evidence.designs, [[0.1, 0.1], [0.5, 0.5], [0.6, 0.6]])
    np.testing.assert_array_equal(evidence.scores[:, 0], [1, 3, 4])
    assert np.isnan(evidence.scores[1:, 1]).all()
    again = type(evidence).from_json(evidence.to_json(), K=2)
    np.testing.assert_array_equal(again.scores, evidence.scores)


def test_inconsistent_evidence_is_an_input_error() -> None:
    with pytest.raises(InputError, match="3 scores for 2"):
        evidence_from([([[0.1, 0.1], [0.2, 0.2]], [[1, 2, 3], [1, 2]])], K=2)
    with pytest.raises(InputError, match="K=2"):
        evidence_from([([[0.1, 0.1]], [[1]])], K=2)
