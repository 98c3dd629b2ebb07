"""DesignSpace: validation, unit-square mapping, clipping, containment, uniform sampling
(also per axis, as training jobs take their samples)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pec.errors import InputError
from pec.maths.design_space import DesignSpace, axis_columns, uniform_design_columns


@pytest.fixture
def space() -> DesignSpace:
    return DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010))


def test_bounds_properties(space: DesignSpace) -> None:
    np.testing.assert_allclose(space.lows, [0.75, 0.001])
    np.testing.assert_allclose(space.highs, [0.89, 0.010])
    np.testing.assert_allclose(space.ranges, [0.14, 0.009])
    assert space.gcr == (0.75, 0.89)
    assert isinstance(space.spcf[0], float)


def test_ranges_are_coerced_to_float_tuples() -> None:
    space = DesignSpace(gcr=[0, 1], spcf=np.array([2, 4]))  # type: ignore[arg-type]
    assert space.gcr == (0.0, 1.0)
    assert space.spcf == (2.0, 4.0)


@pytest.mark.parametrize(
    ("gcr", "spcf", "field"),
    [
        ((0.89, 0.75), (0.001, 0.010), "GCR"),
        ((0.75, 0.75), (0.001, 0.010), "GCR"),
        ((0.75, 0.89), (0.001, math.inf), "spcf"),
        ((0.75, 0.89), (math.nan, 0.010), "spcf"),
        ((0.75, 0.89, 0.9), (0.001, 0.010), "GCR"),
        (("a", "b"), (0.001, 0.010), "GCR"),
    ],
)
def test_invalid_ranges_raise_naming_the_field(gcr: object, spcf: object, field: str) -> None:
    with pytest.raises(InputError, match=field):
        DesignSpace(gcr=gcr, spcf=spcf)  # type: ignore[arg-type]


def test_normalize_maps_corners_and_midpoint(space: DesignSpace) -> None:
    points = np.array([[0.75, 0.001], [0.89, 0.010], [0.82, 0.0055], [0.785, 0.00775]])
    expected = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(space.normalize(points), expected, atol=1e-12)
    np.testing.assert_allclose(space.denormalize(expected), points, atol=1e-12)


def test_clip_clamps_each_coordinate(space: DesignSpace) -> None:
    clipped = space.clip([[0.70, 0.02], [0.80, 0.005], [0.95, -1.0]])
    np.testing.assert_allclose(clipped, [[0.75, 0.010], [0.80, 0.005], [0.89, 0.001]])


def test_contains_is_inclusive(space: DesignSpace) -> None:
    inside = space.contains([[0.75, 0.001], [0.89, 0.010], [0.7499, 0.005], [0.8, 0.0101]])
    assert inside.tolist() == [True, True, False, False]


def test_bad_point_shapes_and_values_raise(space: DesignSpace) -> None:
    with pytest.raises(InputError, match="shape"):
        space.normalize(np.zeros((3, 3)))
    with pytest.raises(InputError, match="not finite"):
        space.clip([[0.8, math.nan]])


def test_sample_uniform_is_inside_and_seeded(space: DesignSpace) -> None:
    first = space.sample_uniform(500, np.random.default_rng(7))
    second = space.sample_uniform(500, np.random.default_rng(7))
    other = space.sample_uniform(500, np.random.default_rng(8))
    assert first.shape == (500, 2)
    assert space.contains(first).all()
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    assert space.sample_uniform(0, np.random.default_rng(0)).shape == (0, 2)
    with pytest.raises(InputError, match="n="):
        space.sample_uniform(-1, np.random.default_rng(0))


@pytest.mark.parametrize("leg", [None, (0.20, 0.48)])
def test_uniform_design_columns_are_numpys_draw_per_axis(leg: tuple[float, float] | None) -> None:
    # the draw every caller made by hand before (trunk, generalist, distillation): one
    # numpy uniform over the box from the caller's seed, rows of d values, float32 columns
    space = DesignSpace(gcr=(0.75, 0.89), spcf=(0.001, 0.010), leg=leg)
    lows = [0.75, 0.001] + ([] if leg is None else [leg[0]])
    highs = [0.89, 0.010] + ([] if leg is None else [leg[1]])
    before = np.random.default_rng(1234).uniform(lows, highs, size=(9, len(lows)))
    before = before.astype(np.float32)
    columns = uniform_design_columns(space, 9, 1234)
    assert len(columns) == space.dim
    for axis, column in enumerate(columns):
        assert column.dtype == np.float32 and column.shape == (9,) and column.flags.c_contiguous
        assert column.tobytes() == before[:, axis].copy().tobytes()
    assert [c.shape for c in uniform_design_columns(space, 0, 1)] == [(0,)] * space.dim
    for seed in (-1, True, 1.5):
        with pytest.raises(InputError, match="sampling seed"):
            uniform_design_columns(space, 3, seed)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="n="):
        uniform_design_columns(space, -1, 0)


def test_axis_columns_split_designs_into_float32_columns() -> None:
    gcr, spcf, leg = axis_columns([[0.8, 0.005, 0.3], [0.85, 0.002, 0.45]])
    assert gcr.tolist() == np.float32([0.8, 0.85]).tolist() and leg.dtype == np.float32
    assert spcf.tolist() == np.float32([0.005, 0.002]).tolist()
    with pytest.raises(InputError, match="shape"):
        axis_columns(np.zeros((2, 4)))
