"""The plots follow the reference sheet: X = spcf, Y = GCR, origin lower, soft coverage fade."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from pec.errors import InputError
from pec.presentation.plots import (
    NO_WINNER_COLOUR,
    PlotExpert,
    _build_coverage_figure,
    _build_figure,
    _hex_to_rgb,
    _to_png,
    _winners,
    background_alpha,
    expert_colour,
    plot_coverage_curve,
    plot_gaussians,
)

# Deliberately very different scales on the two axes, so a swap cannot go unnoticed.
GCR_RANGE = (0.0, 1.0)
SPCF_RANGE = (0.0, 10.0)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _expert(
    expert_id: int,
    mu: tuple[float, float],
    sigma: tuple[float, float],
    designs: np.ndarray | None = None,
) -> PlotExpert:
    return PlotExpert(
        id=expert_id,
        mu=np.array(mu),
        variance=np.array(sigma) ** 2,
        designs=np.zeros((0, 2)) if designs is None else designs,
    )


def _decode(png: bytes) -> np.ndarray:
    assert png.startswith(PNG_SIGNATURE)
    image: np.ndarray = matplotlib.image.imread(io.BytesIO(png))
    return image


def _render(figure: Figure) -> tuple[np.ndarray, Axes]:
    """Rasterise and return the RGB image plus the (now laid out) main axes."""
    image = _decode(_to_png(figure))
    return image[..., :3], figure.axes[0]


def _pixel(image: np.ndarray, ax: Axes, gcr: float, spcf: float) -> np.ndarray:
    """RGB at a data point: X is spcf, Y is GCR; image rows count from the top."""
    x, y = ax.transData.transform((spcf, gcr))
    row = image.shape[0] - 1 - round(y)
    pixel: np.ndarray = image[row, round(x)]
    return pixel


def _blend(colour: str, alpha: float) -> np.ndarray:
    return 1.0 - alpha * (1.0 - np.array(_hex_to_rgb(colour)))


def _coloured_mask(image: np.ndarray) -> np.ndarray:
    """Chromatic pixels only: the black outline, ticks and text have zero saturation."""
    mask: np.ndarray = (image.max(axis=2) - image.min(axis=2)) > 0.03
    return mask


# ---- PNG output ---------------------------------------------------------------------------


def test_plot_gaussians_returns_a_decodable_png_of_figure_size() -> None:
    png = plot_gaussians(
        GCR_RANGE,
        SPCF_RANGE,
        [_expert(0, (0.5, 5.0), (0.1, 1.0))],
        title="initial state",
        resolution=50,
    )
    image = _decode(png)
    assert image.shape[:2] == (600, 900)


def test_plot_coverage_curve_returns_a_decodable_png_of_figure_size() -> None:
    image = _decode(plot_coverage_curve([0, 1, 2], [0.2, 0.5, 0.8], 0.9))
    assert image.shape[:2] == (450, 700)


def test_plot_gaussians_accepts_no_experts_and_draws_only_white_and_outline() -> None:
    image, _ = _render(_build_figure(GCR_RANGE, SPCF_RANGE, [], title="empty"))
    assert not _coloured_mask(image).any()


# ---- orientation and colouring -------------------------------------------------------------


def test_expert_at_high_gcr_low_spcf_colours_the_upper_left_of_the_axes() -> None:
    # GCR 0.8 (high, Y) and spcf 2.0 (low, X): must show upper-left, not flipped nor swapped.
    figure = _build_figure(
        GCR_RANGE, SPCF_RANGE, [_expert(0, (0.8, 2.0), (0.05, 0.5))], title="orientation"
    )
    image, ax = _render(figure)
    x0, y0, x1, y1 = ax.get_window_extent().extents
    height = image.shape[0]
    top, bottom = height - int(y1), height - int(y0)
    x_mid = (x0 + x1) / 2.0
    y_mid = (top + bottom) / 2.0
    rows, cols = np.nonzero(_coloured_mask(image[top:bottom, int(x0) : int(x1)]))
    rows = rows + top
    cols = cols + int(x0)
    assert rows.size > 0
    # Every coloured pixel inside the axes lies in the upper-left quadrant.
    assert np.all(cols < x_mid)
    assert np.all(rows < y_mid)
    # And the centre of the colour is where the data puts it.
    cx, cy = ax.transData.transform((2.0, 0.8))
    assert abs(cols.mean() - cx) < 5
    assert abs(rows.mean() - (height - 1 - cy)) < 5


def test_mirror_positions_of_a_single_expert_stay_white() -> None:
    image, ax = _render(
        _build_figure(GCR_RANGE, SPCF_RANGE, [_expert(0, (0.8, 2.0), (0.05, 0.5))], title="m")
    )
    assert not np.allclose(_pixel(image, ax, 0.8, 2.3), 1.0)
    white = np.ones(3)
    np.testing.assert_array_equal(_pixel(image, ax, 0.2, 2.3), white)  # flipped (no origin)
    np.testing.assert_array_equal(_pixel(image, ax, 0.8, 8.0), white)  # spcf mirrored
    np.testing.assert_array_equal(_pixel(image, ax, 0.2, 8.0), white)  # axes swapped


def test_uncovered_corners_of_the_box_are_white() -> None:
    image, ax = _render(
        _build_figure(GCR_RANGE, SPCF_RANGE, [_expert(0, (0.5, 5.0), (0.1, 1.0))], title="c")
    )
    white = np.ones(3)
    for gcr in (0.05, 0.95):
        for spcf in (0.5, 9.5):
            np.testing.assert_array_equal(_pixel(image, ax, gcr, spcf), white)


def test_background_colour_follows_the_hand_computed_alpha() -> None:
    # 0.7 sigma from the centre along spcf: log-density = -0.245,
    # alpha = 0.15 + 0.40 * (1 - 0.245 / 2) = 0.501 over white.
    image, ax = _render(
        _build_figure(
            GCR_RANGE,
            SPCF_RANGE,
            [_expert(0, (0.5, 5.0), (0.1, 1.0))],
            title="alpha",
            resolution=400,
        )
    )
    expected = _blend(expert_colour(0), 0.501)
    np.testing.assert_allclose(_pixel(image, ax, 0.5, 5.7), expected, atol=0.02)
    # Near the 2-sigma edge (1.8 sigma along GCR): log-density -1.62, alpha 0.226.
    near_edge = _blend(expert_colour(0), 0.226)
    np.testing.assert_allclose(_pixel(image, ax, 0.68, 5.0), near_edge, atol=0.03)


def test_two_experts_each_dominate_near_their_own_centre() -> None:
    experts = [_expert(0, (0.3, 3.0), (0.15, 1.5)), _expert(1, (0.6, 6.5), (0.15, 1.5))]
    image, ax = _render(_build_figure(GCR_RANGE, SPCF_RANGE, experts, title="two"))
    for expert, other in ((experts[0], experts[1]), (experts[1], experts[0])):
        gcr, spcf = float(expert.mu[0]), float(expert.mu[1]) + 0.6 * 1.5
        got = _pixel(image, ax, gcr, spcf)
        own = _blend(expert_colour(expert.id), 0.15 + 0.40 * (1 - 0.18 / 2))
        wrong = _blend(expert_colour(other.id), 0.15 + 0.40 * (1 - 0.18 / 2))
        np.testing.assert_allclose(got, own, atol=0.03)
        assert np.abs(got - wrong).max() > 0.1


def test_background_alpha_hand_values() -> None:
    got = background_alpha(np.array([0.0, -1.0, -1.5, -2.0, -5.0]))
    np.testing.assert_allclose(got, [0.55, 0.35, 0.25, 0.0, 0.0])
    assert background_alpha(np.array([-1.9999]))[0] == pytest.approx(0.15, abs=1e-3)


# ---- artists ------------------------------------------------------------------------------


def test_each_expert_has_a_solid_1sigma_and_dashed_2sigma_ellipse_and_its_designs() -> None:
    designs = np.array([[0.4, 4.0], [0.45, 4.5], [0.5, 5.5]])
    experts = [_expert(0, (0.4, 4.0), (0.1, 2.0), designs), _expert(4, (0.7, 8.0), (0.05, 0.5))]
    ax = _build_figure(GCR_RANGE, SPCF_RANGE, experts, title="artists").axes[0]
    ellipses = [patch for patch in ax.patches if isinstance(patch, Ellipse)]
    assert len(ellipses) == 4
    first = ellipses[:2]
    assert [e.get_linestyle() for e in first] == ["solid", "dashed"]
    # Width runs along X = spcf, height along Y = GCR; diameters 2 and 4 sigma.
    assert [e.width for e in first] == pytest.approx([4.0, 8.0])
    assert [e.height for e in first] == pytest.approx([0.2, 0.4])
    assert tuple(first[0].center) == pytest.approx((4.0, 0.4))
    centres = [line for line in ax.lines if line.get_marker() == "+"]
    assert len(centres) == 2
    dots = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(dots) == 1
    np.testing.assert_allclose(np.asarray(dots[0].get_offsets()), designs[:, ::-1])
    image = ax.images[0]
    assert image.origin == "lower"
    assert ax.get_xlabel() == "spcf" and ax.get_ylabel() == "GCR"
    assert ax.get_title() == "artists"
    assert ax.get_legend() is not None


def _stars(ax: Axes) -> list[tuple[tuple[float, float], str]]:
    out = []
    for line in ax.lines:
        if line.get_marker() == "*":
            xs, ys = (np.asarray(values, dtype=float) for values in line.get_data())
            out.append(((float(xs[0]), float(ys[0])), str(line.get_color())))
    return out


def test_candidates_are_stars_in_the_winner_colour_labelled_with_its_score() -> None:
    experts = [_expert(3, (0.3, 3.0), (0.1, 1.0)), _expert(1, (0.7, 7.0), (0.1, 1.0))]
    candidates = np.array([[0.5, 5.0], [0.2, 2.0], [0.9, 9.0], [0.1, 9.0]])
    scores = np.array(
        [
            [12.0, 7.0, np.nan, 0.0],  # expert id 3
            [12.0, 3.5, 4.0, 0.0],  # expert id 1
        ]
    )
    ax = _build_figure(
        GCR_RANGE, SPCF_RANGE, experts, title="frontier", candidates=candidates, scores=scores
    ).axes[0]
    stars = _stars(ax)
    assert len(stars) == 4
    assert [s[0] for s in stars] == [(5.0, 0.5), (2.0, 0.2), (9.0, 0.9), (9.0, 0.1)]
    # tie -> lower id (1), clear win -> id 3, NaN ignored -> id 1, all zero -> grey
    assert [s[1] for s in stars] == [
        expert_colour(1),
        expert_colour(3),
        expert_colour(1),
        NO_WINNER_COLOUR,
    ]
    assert [t.get_text() for t in ax.texts] == ["12", "7", "4", "0"]


def test_candidates_without_scores_are_grey_and_unlabelled() -> None:
    ax = _build_figure(
        GCR_RANGE,
        SPCF_RANGE,
        [_expert(0, (0.5, 5.0), (0.1, 1.0))],
        title="proposed",
        candidates=np.array([[0.5, 5.0], [0.6, 6.0]]),
    ).axes[0]
    assert [s[1] for s in _stars(ax)] == [NO_WINNER_COLOUR, NO_WINNER_COLOUR]
    assert len(ax.texts) == 0


def test_winners_ties_to_lower_id_and_skips_nan() -> None:
    scores = np.array(
        [[5.0, np.nan, 1.0, np.nan], [5.0, 2.0, 3.0, np.nan], [4.0, 2.0, 3.0, np.nan]]
    )
    # ids in row order: 7, 2, 0 -> column 0 ties rows 0/1 (ids 7, 2) -> row 1;
    # column 1 ties rows 1/2 (ids 2, 0) -> row 2; column 3 all NaN -> -1.
    np.testing.assert_array_equal(_winners(scores, [7, 2, 0]), [1, 2, 2, -1])


def test_coverage_figure_draws_the_curve_and_target() -> None:
    ax = _build_coverage_figure([0, 1, 3], [0.1, 0.4, 0.7], 0.85).axes[0]
    xs, ys = (np.asarray(values, dtype=float) for values in ax.lines[0].get_data())
    np.testing.assert_array_equal(xs, np.array([0.0, 1.0, 3.0]))
    np.testing.assert_allclose(ys, np.array([0.1, 0.4, 0.7]))
    target = np.asarray(ax.lines[1].get_ydata(), dtype=float)
    np.testing.assert_array_equal(target, np.array([0.85, 0.85]))
    assert len(_build_coverage_figure([0], [0.5], None).axes[0].lines) == 1


# ---- validation ---------------------------------------------------------------------------


def _ok_expert() -> PlotExpert:
    return _expert(0, (0.5, 5.0), (0.1, 1.0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"gcr_range": (1.0, 0.0)},
        {"spcf_range": (2.0, 2.0)},
        {"gcr_range": (0.0, float("nan"))},
        {"resolution": 1},
        {"resolution": 200.0},
        {"candidates": np.array([[0.5, 5.0]]), "scores": np.array([[1.0, 2.0]])},
        {"candidates": np.array([[0.5, 5.0]]), "scores": np.array([[np.inf]])},
        {"candidates": np.array([[0.5, np.nan]])},
        {"candidates": np.array([0.5, 5.0, 1.0])},
        {"scores": np.array([[1.0]])},
        {"experts": [_expert(0, (0.5, 5.0), (0.1, 1.0)), _expert(0, (0.2, 2.0), (0.1, 1.0))]},
        {"experts": ["not an expert"]},
        {"title": None},
    ],
)
def test_plot_gaussians_rejects_invalid_input(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "gcr_range": GCR_RANGE,
        "spcf_range": SPCF_RANGE,
        "experts": [_ok_expert()],
        "title": "t",
    }
    args.update(kwargs)
    with pytest.raises(InputError):
        plot_gaussians(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mu", "variance", "designs", "expert_id"),
    [
        ([0.5, np.nan], [0.01, 1.0], np.zeros((0, 2)), 0),
        ([0.5], [0.01, 1.0], np.zeros((0, 2)), 0),
        ([0.5, 5.0], [0.0, 1.0], np.zeros((0, 2)), 0),
        ([0.5, 5.0], [0.01, 1.0], np.zeros((3, 3)), 0),
        ([0.5, 5.0], [0.01, 1.0], np.zeros((0, 2)), -1),
        ([0.5, 5.0], [0.01, 1.0], np.zeros((0, 2)), True),
    ],
)
def test_plot_expert_rejects_invalid_fields(
    mu: list[float], variance: list[float], designs: np.ndarray, expert_id: int
) -> None:
    with pytest.raises(InputError):
        PlotExpert(id=expert_id, mu=np.array(mu), variance=np.array(variance), designs=designs)


@pytest.mark.parametrize(
    ("iterations", "coverages", "target"),
    [
        ([], [], None),
        ([0, 1], [0.5], None),
        ([0, 0], [0.1, 0.2], None),
        ([1, 0], [0.1, 0.2], None),
        ([-1, 0], [0.1, 0.2], None),
        ([0.5, 1.5], [0.1, 0.2], None),
        ([0, 1], [0.1, 1.2], None),
        ([0, 1], [0.1, float("nan")], None),
        ([0, 1], [0.1, 0.2], 1.5),
        ([0, 1], [0.1, 0.2], 0.0),
        ([0, 1], [0.1, 0.2], "0.9"),
    ],
)
def test_plot_coverage_curve_rejects_invalid_input(
    iterations: list[int], coverages: list[float], target: object
) -> None:
    with pytest.raises(InputError):
        plot_coverage_curve(iterations, coverages, target)  # type: ignore[arg-type]
