"""Deployment routing: nearest centre in the unit square, ties to the lower id."""

from __future__ import annotations

import numpy as np
import pytest

from pec.errors import InputError
from pec.maths.design_space import DesignSpace
from pec.maths.routing import route


def test_routes_in_normalised_not_physical_space() -> None:
    space = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))
    mus = [[0.785, 0.00325], [0.855, 0.00775]]
    # Physically nearest to expert 0 (the GCR gap dominates raw distance), but in the unit
    # square it is 0.70 from expert 0 and 0.44 from expert 1.
    design = [[0.80, 0.0095]]
    raw = np.linalg.norm(np.array(mus) - design, axis=1)
    assert int(np.argmin(raw)) == 0
    assert route(design, mus, space).tolist() == [1]
    assert route([[0.78, 0.003], [0.86, 0.008]], mus, space).tolist() == [0, 1]


def test_ties_go_to_lower_id() -> None:
    unit = DesignSpace(gcr=(0.0, 1.0), spcf=(0.0, 1.0))
    assert route([[0.5, 0.3]], [[0.25, 0.5], [0.75, 0.5]], unit).tolist() == [0]
    assert route([[0.5, 0.3]], [[0.75, 0.5], [0.25, 0.5]], unit).tolist() == [0]
    assert route([[0.1, 0.9]], [[0.5, 0.5], [0.5, 0.5], [0.9, 0.1]], unit).tolist() == [0]


def test_empty_and_invalid_inputs() -> None:
    unit = DesignSpace(gcr=(0.0, 1.0), spcf=(0.0, 1.0))
    routed = route(np.zeros((0, 2)), [[0.5, 0.5]], unit)
    assert routed.shape == (0,) and routed.dtype == np.int64
    with pytest.raises(InputError, match="mus"):
        route([[0.5, 0.5]], np.zeros((0, 2)), unit)
    with pytest.raises(InputError, match="designs"):
        route([[0.5, 0.5, 0.5]], [[0.5, 0.5]], unit)
