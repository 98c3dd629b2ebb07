"""PEC figures as PNG bytes: arrays in, pictures out, nothing read from the store.

Figures are built with ``matplotlib.figure.Figure`` and rendered by ``FigureCanvasAgg``
rather than pyplot, so no global backend or figure registry is touched and plots can be
drawn from worker threads. Every plot puts spcf on X and GCR on Y (the reference sheet's
convention) and draws the density image with ``origin="lower"``, never flipped.

A 3-D run (GCR x spcf x leg) is drawn as three projections (spcf-GCR, leg-GCR, spcf-leg),
each with the experts' projected 1-sigma / 2-sigma ellipses, designs and frontier stars on
the same conventions, plus a perspective view of the 2-sigma ellipsoids as wireframes.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Ellipse, Patch, Rectangle
from matplotlib.ticker import MaxNLocator
from numpy.typing import ArrayLike

from pec.errors import InputError
from pec.maths.coverage import COVERAGE_LOG_DENSITY, log_density
from pec.maths.design_space import DesignSpace, FloatArray, IntArray, as_points, as_vector

logger = logging.getLogger(__name__)

EXPERT_COLOURS: tuple[str, ...] = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)
"""tab10 without its grey, so a grey star can only mean "nobody scored above zero"."""

NO_WINNER_COLOUR: str = "#7f7f7f"
ALPHA_EDGE: float = 0.15
"""Background alpha on the 2-sigma edge (log-density == COVERAGE_LOG_DENSITY)."""
ALPHA_CENTRE: float = 0.55
"""Background alpha at an expert's centre (log-density == 0)."""
VIEW_MARGIN: float = 0.05
"""Fraction of the box added on each side so ellipses at the border stay visible."""
FIGSIZE: tuple[float, float] = (9.0, 6.0)
DPI: int = 100
MAX_RESOLUTION: int = 2000


@dataclass(frozen=True)
class PlotExpert:
    """One expert as the plots need it: ``mu``/``variance`` are [GCR, spcf(, leg)], designs (n, d)."""

    id: int
    mu: FloatArray
    variance: FloatArray
    designs: FloatArray

    def __post_init__(self) -> None:
        if isinstance(self.id, bool) or not isinstance(self.id, int | np.integer) or self.id < 0:
            raise InputError(f"expert id {self.id!r} is invalid; pass an integer >= 0")
        name = f"expert {self.id}"
        object.__setattr__(self, "id", int(self.id))
        dim = 3 if np.shape(self.mu) == (3,) else 2
        object.__setattr__(self, "mu", as_vector(f"{name} mu", self.mu, dim))
        variance = as_vector(f"{name} variance", self.variance, dim)
        if np.any(variance <= 0.0):
            raise InputError(
                f"{name} variance {variance.tolist()} must be > 0; apply the variance floor"
            )
        object.__setattr__(self, "variance", variance)
        object.__setattr__(self, "designs", as_points(f"{name} designs", self.designs, dim=dim))

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def expert_colour(expert_id: int) -> str:
    """Stable colour per expert id, so the same expert looks the same in every plot."""
    return EXPERT_COLOURS[expert_id % len(EXPERT_COLOURS)]


def background_alpha(max_log_density: FloatArray) -> FloatArray:
    """Alpha per pixel: linear in log-density from the 2-sigma edge to the centre, 0 outside.

    A soft fade instead of a binary mask shows how firmly a region is owned.
    """
    ld = np.asarray(max_log_density, dtype=np.float64)
    depth = np.clip(1.0 - ld / COVERAGE_LOG_DENSITY, 0.0, 1.0)
    alpha: FloatArray = np.where(
        ld > COVERAGE_LOG_DENSITY, ALPHA_EDGE + (ALPHA_CENTRE - ALPHA_EDGE) * depth, 0.0
    )
    return alpha


def _winners(scores: FloatArray, ids: Sequence[int]) -> IntArray:
    """Row index of the best expert per column; ties go to the lower id, NaN is skipped.

    -1 where a column is all NaN. Display-only: the refit has its own assignment rule.
    """
    n_experts, n_candidates = scores.shape
    result = np.full(n_candidates, -1, dtype=np.int64)
    for f in range(n_candidates):
        best_row = -1
        for row in range(n_experts):
            value = scores[row, f]
            if math.isnan(value):
                continue
            if best_row < 0:
                best_row = row
                continue
            best = scores[best_row, f]
            if value > best or (value == best and ids[row] < ids[best_row]):
                best_row = row
        result[f] = best_row
    return result


def _format_score(value: float) -> str:
    return f"{value:g}"


def _check_experts(experts: Sequence[PlotExpert]) -> list[PlotExpert]:
    checked = list(experts)
    for index, expert in enumerate(checked):
        if not isinstance(expert, PlotExpert):
            raise InputError(
                f"experts[{index}] is {type(expert).__name__}; pass PlotExpert instances"
            )
    ids = [expert.id for expert in checked]
    if len(set(ids)) != len(ids):
        raise InputError(f"expert ids {ids} are not unique; give every expert its own id")
    return checked


def _check_resolution(resolution: int) -> int:
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, int | np.integer)
        or not 2 <= resolution <= MAX_RESOLUTION
    ):
        raise InputError(
            f"resolution {resolution!r} is invalid; pass an integer in [2, {MAX_RESOLUTION}]"
        )
    return int(resolution)


def _check_scores(
    candidates: ArrayLike | None, scores: ArrayLike | None, n_experts: int, dim: int = 2
) -> tuple[FloatArray | None, FloatArray | None]:
    if candidates is None:
        if scores is not None:
            raise InputError("scores were given without candidates; pass both or neither")
        return None, None
    candidate_array = as_points("candidates", candidates, dim=dim)
    if scores is None:
        return candidate_array, None
    score_array = np.asarray(scores, dtype=np.float64)
    expected = (n_experts, candidate_array.shape[0])
    if score_array.shape != expected:
        raise InputError(
            f"scores has shape {score_array.shape}; pass (K experts, F candidates) = {expected}"
        )
    if np.any(np.isinf(score_array)):
        raise InputError("scores contain inf; use finite values, or NaN for not evaluated")
    return candidate_array, score_array


def _background_image(
    experts: Sequence[PlotExpert],
    gcr_view: tuple[float, float],
    spcf_view: tuple[float, float],
    resolution: int,
) -> FloatArray:
    """(resolution, resolution, 4) RGBA, row 0 = lowest GCR (to be drawn origin='lower')."""
    image = np.zeros((resolution, resolution, 4), dtype=np.float64)
    if not experts:
        return image
    gcr_axis = np.linspace(gcr_view[0], gcr_view[1], resolution)
    spcf_axis = np.linspace(spcf_view[0], spcf_view[1], resolution)
    gcr_grid, spcf_grid = np.meshgrid(gcr_axis, spcf_axis, indexing="ij")
    points = np.column_stack([gcr_grid.ravel(), spcf_grid.ravel()])
    mus = np.stack([expert.mu for expert in experts])
    variances = np.stack([expert.variance for expert in experts])
    ld = log_density(points, mus, variances)
    dominant = np.argmax(ld, axis=1)
    alpha = background_alpha(np.max(ld, axis=1))
    palette = np.array(
        [_hex_to_rgb(expert_colour(expert.id)) for expert in experts], dtype=np.float64
    )
    image[..., :3] = palette[dominant].reshape(resolution, resolution, 3)
    image[..., 3] = alpha.reshape(resolution, resolution)
    return image


def _hex_to_rgb(colour: str) -> tuple[float, float, float]:
    value = colour.lstrip("#")
    return (
        int(value[0:2], 16) / 255.0,
        int(value[2:4], 16) / 255.0,
        int(value[4:6], 16) / 255.0,
    )


def _build_figure(
    gcr_range: tuple[float, float],
    spcf_range: tuple[float, float],
    experts: Sequence[PlotExpert],
    *,
    title: str,
    candidates: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    resolution: int = 200,
) -> Figure:
    """The Gaussian plot as a Figure, so tests can inspect artists before rasterising."""
    space = DesignSpace(gcr=gcr_range, spcf=spcf_range)
    expert_list = _check_experts(experts)
    resolution = _check_resolution(resolution)
    candidate_array, score_array = _check_scores(candidates, scores, len(expert_list))
    if not isinstance(title, str):
        raise InputError(f"title {title!r} is not a string; pass the plot title as text")

    gcr_pad = (space.gcr[1] - space.gcr[0]) * VIEW_MARGIN
    spcf_pad = (space.spcf[1] - space.spcf[0]) * VIEW_MARGIN
    gcr_view = (space.gcr[0] - gcr_pad, space.gcr[1] + gcr_pad)
    spcf_view = (space.spcf[0] - spcf_pad, space.spcf[1] + spcf_pad)

    figure = Figure(figsize=FIGSIZE, dpi=DPI, facecolor="white", layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.set_facecolor("white")
    ax.imshow(
        _background_image(expert_list, gcr_view, spcf_view, resolution),
        origin="lower",
        extent=(spcf_view[0], spcf_view[1], gcr_view[0], gcr_view[1]),
        aspect="auto",
        interpolation="nearest",
        zorder=0,
    )
    draw_design_box(ax, space, linewidth=1.5)

    handles: list[Line2D | Patch] = []
    for expert in expert_list:
        colour = expert_colour(expert.id)
        sigma = np.sqrt(expert.variance)
        centre = (float(expert.mu[1]), float(expert.mu[0]))
        for n_sigma, style in ((1.0, "solid"), (2.0, "dashed")):
            ax.add_patch(
                Ellipse(
                    centre,
                    width=2.0 * n_sigma * float(sigma[1]),
                    height=2.0 * n_sigma * float(sigma[0]),
                    fill=False,
                    edgecolor=colour,
                    linestyle=style,
                    linewidth=1.5,
                    zorder=3,
                )
            )
        if expert.designs.shape[0] > 0:
            ax.scatter(
                expert.designs[:, 1], expert.designs[:, 0], s=6, color=colour, alpha=0.8, zorder=4
            )
        ax.plot([centre[0]], [centre[1]], marker="+", markersize=12, mew=2, color=colour, zorder=5)
        handles.append(
            Patch(
                facecolor=colour,
                edgecolor=colour,
                label=f"expert {expert.id} (n={expert.designs.shape[0]})",
            )
        )

    if candidate_array is not None and candidate_array.shape[0] > 0:
        _draw_candidates(ax, expert_list, candidate_array, score_array)
        handles.append(
            Line2D([], [], marker="*", linestyle="none", color=NO_WINNER_COLOUR, label="candidate")
        )

    handles.extend(
        [
            Line2D([], [], color="black", linestyle="solid", label="1σ"),
            Line2D([], [], color="black", linestyle="dashed", label="2σ"),
            Line2D([], [], color="black", marker="+", linestyle="none", label="centre"),
            Patch(facecolor="none", edgecolor="black", label="design box"),
        ]
    )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
    ax.set_xlim(spcf_view)
    ax.set_ylim(gcr_view)
    ax.set_xlabel("spcf")
    ax.set_ylabel("GCR")
    ax.set_title(title)
    return figure


def _draw_candidates(
    ax: Axes,
    experts: Sequence[PlotExpert],
    candidates: FloatArray,
    scores: FloatArray | None,
) -> None:
    """Stars in the winner's colour, labelled with its score; grey when nobody scored > 0."""
    winners = (
        _winners(scores, [expert.id for expert in experts])
        if scores is not None
        else np.full(candidates.shape[0], -1, dtype=np.int64)
    )
    for f in range(candidates.shape[0]):
        row = int(winners[f])
        gcr, spcf = float(candidates[f, 0]), float(candidates[f, 1])
        label: str | None = None
        colour = NO_WINNER_COLOUR
        if scores is not None:
            if row >= 0:
                label = _format_score(float(scores[row, f]))
                evaluated = scores[:, f][~np.isnan(scores[:, f])]
                if np.any(evaluated != 0.0):
                    colour = expert_colour(experts[row].id)
            else:
                label = "n/a"
        ax.plot(
            [spcf],
            [gcr],
            marker="*",
            markersize=14,
            linestyle="none",
            color=colour,
            markeredgecolor="black",
            markeredgewidth=0.6,
            zorder=6,
        )
        if label is not None:
            ax.annotate(
                label,
                (spcf, gcr),
                xytext=(6, 6),
                textcoords="offset points",
                fontsize="small",
                zorder=7,
            )


def draw_design_box(ax: Axes, space: DesignSpace, *, linewidth: float) -> None:
    """The black outline of the design box (x = spcf, y = GCR) that every map shares."""
    ax.add_patch(
        Rectangle(
            (space.spcf[0], space.gcr[0]),
            space.spcf[1] - space.spcf[0],
            space.gcr[1] - space.gcr[0],
            fill=False,
            edgecolor="black",
            linewidth=linewidth,
            zorder=2,
        )
    )


def _to_png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def plot_gaussians(
    gcr_range: tuple[float, float],
    spcf_range: tuple[float, float],
    experts: Sequence[PlotExpert],
    *,
    title: str,
    candidates: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    resolution: int = 200,
    leg_range: tuple[float, float] | None = None,
) -> bytes:
    """PNG of the experts' Gaussians over the design box, with optional frontier candidates.

    ``candidates`` is (F, d) [GCR, spcf(, leg)]; ``scores`` is (K, F) in the order of
    ``experts``, NaN where an expert did not evaluate a candidate. ``leg_range`` set draws a
    3-D run (projections and wireframe ellipsoids, `_build_figure_3d`).
    """
    if leg_range is not None:
        space = DesignSpace(gcr=gcr_range, spcf=spcf_range, leg=leg_range)
        figure = _build_figure_3d(
            space, experts, title=title, candidates=candidates, scores=scores, resolution=resolution
        )
        return _to_png(figure)
    figure = _build_figure(
        gcr_range,
        spcf_range,
        experts,
        title=title,
        candidates=candidates,
        scores=scores,
        resolution=resolution,
    )
    logger.debug("rendering Gaussian plot %r with %d experts", title, len(experts))
    return _to_png(figure)


# ---------------------------------------------------------------- 3-D design spaces

PROJECTIONS: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (1, 2))
"""(x axis, y axis) column pairs of the three panels: spcf-GCR, leg-GCR, spcf-leg."""
AXIS_LABELS: tuple[str, str, str] = ("GCR", "spcf", "leg (m)")
FIGSIZE_3D: tuple[float, float] = (13.0, 10.0)
WIREFRAME_STEPS: tuple[int, int] = (18, 10)


def _view(space: DesignSpace, axis: int) -> tuple[float, float]:
    lo, hi = space.bounds[axis]
    pad = (hi - lo) * VIEW_MARGIN
    return (lo - pad, hi + pad)


def _projection_image(
    experts: Sequence[PlotExpert],
    x_axis: int,
    y_axis: int,
    x_view: tuple[float, float],
    y_view: tuple[float, float],
    resolution: int,
) -> FloatArray:
    """RGBA of the projected (marginal) Gaussians on two axes, row 0 = lowest y.

    The shadow of an axis-aligned ellipsoid's k-sigma surface on a coordinate plane is the
    k-sigma ellipse of the two axes' marginal, so the 2-D rule applies to the column pair.
    """
    image = np.zeros((resolution, resolution, 4), dtype=np.float64)
    if not experts:
        return image
    ys, xs = np.meshgrid(
        np.linspace(y_view[0], y_view[1], resolution),
        np.linspace(x_view[0], x_view[1], resolution),
        indexing="ij",
    )
    points = np.column_stack([ys.ravel(), xs.ravel()])
    mus = np.stack([[e.mu[y_axis], e.mu[x_axis]] for e in experts])
    variances = np.stack([[e.variance[y_axis], e.variance[x_axis]] for e in experts])
    ld = log_density(points, mus, variances)
    palette = np.array([_hex_to_rgb(expert_colour(e.id)) for e in experts], dtype=np.float64)
    image[..., :3] = palette[np.argmax(ld, axis=1)].reshape(resolution, resolution, 3)
    image[..., 3] = background_alpha(np.max(ld, axis=1)).reshape(resolution, resolution)
    return image


def _candidate_colours(
    experts: Sequence[PlotExpert], candidates: FloatArray, scores: FloatArray | None
) -> tuple[list[str], list[str | None]]:
    """Per candidate: the winner's colour (grey when nobody scored > 0) and its score label."""
    winners = (
        _winners(scores, [e.id for e in experts])
        if scores is not None
        else np.full(candidates.shape[0], -1, dtype=np.int64)
    )
    colours: list[str] = []
    labels: list[str | None] = []
    for f in range(candidates.shape[0]):
        row = int(winners[f])
        colour, label = NO_WINNER_COLOUR, None
        if scores is not None:
            if row >= 0:
                label = _format_score(float(scores[row, f]))
                evaluated = scores[:, f][~np.isnan(scores[:, f])]
                if np.any(evaluated != 0.0):
                    colour = expert_colour(experts[row].id)
            else:
                label = "n/a"
        colours.append(colour)
        labels.append(label)
    return colours, labels


def _projection_panel(
    ax: Axes,
    space: DesignSpace,
    experts: Sequence[PlotExpert],
    x_axis: int,
    y_axis: int,
    candidates: FloatArray | None,
    colours: list[str],
    labels: list[str | None],
    resolution: int,
) -> None:
    x_view, y_view = _view(space, x_axis), _view(space, y_axis)
    ax.set_facecolor("white")
    ax.imshow(
        _projection_image(experts, x_axis, y_axis, x_view, y_view, resolution),
        origin="lower",
        extent=(x_view[0], x_view[1], y_view[0], y_view[1]),
        aspect="auto",
        interpolation="nearest",
        zorder=0,
    )
    (x_lo, x_hi), (y_lo, y_hi) = space.bounds[x_axis], space.bounds[y_axis]
    ax.add_patch(
        Rectangle(
            (x_lo, y_lo), x_hi - x_lo, y_hi - y_lo, fill=False, edgecolor="black", linewidth=1.2
        )
    )
    for expert in experts:
        colour = expert_colour(expert.id)
        sigma = np.sqrt(expert.variance)
        centre = (float(expert.mu[x_axis]), float(expert.mu[y_axis]))
        for n_sigma, style in ((1.0, "solid"), (2.0, "dashed")):
            ax.add_patch(
                Ellipse(
                    centre,
                    width=2.0 * n_sigma * float(sigma[x_axis]),
                    height=2.0 * n_sigma * float(sigma[y_axis]),
                    fill=False,
                    edgecolor=colour,
                    linestyle=style,
                    linewidth=1.3,
                    zorder=3,
                )
            )
        if expert.designs.shape[0] > 0:
            ax.scatter(
                expert.designs[:, x_axis],
                expert.designs[:, y_axis],
                s=5,
                color=colour,
                alpha=0.8,
                zorder=4,
            )
        ax.plot([centre[0]], [centre[1]], marker="+", markersize=11, mew=2, color=colour, zorder=5)
    if candidates is not None:
        for f in range(candidates.shape[0]):
            point = (float(candidates[f, x_axis]), float(candidates[f, y_axis]))
            ax.plot(
                [point[0]],
                [point[1]],
                marker="*",
                markersize=12,
                linestyle="none",
                color=colours[f],
                markeredgecolor="black",
                markeredgewidth=0.5,
                zorder=6,
            )
            label = labels[f]
            if label is not None:
                ax.annotate(
                    label,
                    point,
                    xytext=(5, 5),
                    textcoords="offset points",
                    fontsize="x-small",
                    zorder=7,
                )
    ax.set_xlim(x_view)
    ax.set_ylim(y_view)
    ax.set_xlabel(AXIS_LABELS[x_axis])
    ax.set_ylabel(AXIS_LABELS[y_axis])
    ax.set_title(f"{AXIS_LABELS[y_axis]} vs {AXIS_LABELS[x_axis]} (projection)", fontsize="medium")


def ellipsoid_wireframe(
    mu: FloatArray, variance: FloatArray, n_sigma: float = 2.0
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(spcf, leg, GCR) grids of the n-sigma surface of an axis-aligned 3-D Gaussian."""
    u = np.linspace(0.0, 2.0 * math.pi, WIREFRAME_STEPS[0])
    v = np.linspace(0.0, math.pi, WIREFRAME_STEPS[1])
    radius = n_sigma * np.sqrt(variance)
    gcr = mu[0] + radius[0] * np.outer(np.ones_like(u), np.cos(v))
    spcf = mu[1] + radius[1] * np.outer(np.cos(u), np.sin(v))
    leg = mu[2] + radius[2] * np.outer(np.sin(u), np.sin(v))
    return spcf, leg, gcr


def _wireframe_panel(
    ax: Any,
    space: DesignSpace,
    experts: Sequence[PlotExpert],
    candidates: FloatArray | None,
    colours: list[str],
) -> None:
    for expert in experts:
        colour = expert_colour(expert.id)
        xs, ys, zs = ellipsoid_wireframe(expert.mu, expert.variance)
        ax.plot_wireframe(xs, ys, zs, color=colour, linewidth=0.6, alpha=0.7)
        ax.scatter([expert.mu[1]], [expert.mu[2]], [expert.mu[0]], marker="+", s=80, color=colour)
    if candidates is not None and candidates.shape[0] > 0:
        ax.scatter(
            candidates[:, 1],
            candidates[:, 2],
            candidates[:, 0],
            marker="*",
            s=70,
            c=colours,
            edgecolors="black",
            linewidths=0.4,
            depthshade=False,
        )
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.set_xlim(space.spcf)
    ax.set_ylim(space.bounds[2])
    ax.set_zlim(space.gcr)
    ax.set_xlabel("spcf")
    ax.set_ylabel("leg (m)")
    ax.set_zlabel("GCR")
    ax.set_title("2σ ellipsoids (wireframe)", fontsize="medium")


def _build_figure_3d(
    space: DesignSpace,
    experts: Sequence[PlotExpert],
    *,
    title: str,
    candidates: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    resolution: int = 200,
) -> Figure:
    """Three projections and a wireframe view of a 3-D run's Gaussians (see the module doc)."""
    if space.dim != 3:
        raise InputError("the 3-D plot needs a design space with a leg axis")
    expert_list = _check_experts(experts)
    for expert in expert_list:
        if expert.dim != 3:
            raise InputError(
                f"expert {expert.id} has a {expert.dim}-D mu; a 3-D plot needs [GCR, spcf, leg]"
            )
    resolution = _check_resolution(resolution)
    candidate_array, score_array = _check_scores(candidates, scores, len(expert_list), dim=3)
    if not isinstance(title, str):
        raise InputError(f"title {title!r} is not a string; pass the plot title as text")
    if candidate_array is not None:
        colours, labels = _candidate_colours(expert_list, candidate_array, score_array)
    else:
        colours, labels = [], []
    figure = Figure(figsize=FIGSIZE_3D, dpi=DPI, facecolor="white", layout="constrained")
    FigureCanvasAgg(figure)
    for index, (x_axis, y_axis) in enumerate(PROJECTIONS):
        ax = figure.add_subplot(2, 2, index + 1)
        _projection_panel(
            ax,
            space,
            expert_list,
            x_axis,
            y_axis,
            candidate_array,
            colours,
            labels,
            resolution,
        )
    _wireframe_panel(
        figure.add_subplot(2, 2, 4, projection="3d"), space, expert_list, candidate_array, colours
    )
    handles: list[Line2D | Patch] = [
        Patch(
            facecolor=expert_colour(e.id),
            edgecolor=expert_colour(e.id),
            label=f"expert {e.id} (n={e.designs.shape[0]})",
        )
        for e in expert_list
    ]
    if candidate_array is not None and candidate_array.shape[0] > 0:
        handles.append(
            Line2D([], [], marker="*", linestyle="none", color=NO_WINNER_COLOUR, label="candidate")
        )
    handles.extend(
        [
            Line2D([], [], color="black", linestyle="solid", label="1σ"),
            Line2D([], [], color="black", linestyle="dashed", label="2σ"),
            Line2D([], [], color="black", marker="+", linestyle="none", label="centre"),
        ]
    )
    figure.legend(handles=handles, loc="outside right upper", fontsize="small")
    figure.suptitle(title)
    return figure


def _build_coverage_figure(
    iterations: Sequence[int], coverages: Sequence[float], target: float | None
) -> Figure:
    iteration_array = np.asarray(iterations)
    coverage_array = np.asarray(coverages, dtype=np.float64)
    if iteration_array.ndim != 1 or iteration_array.shape[0] == 0:
        raise InputError(
            f"iterations has shape {iteration_array.shape}; pass a non-empty list of integers"
        )
    if iteration_array.dtype.kind not in "iu":
        raise InputError(f"iterations {iteration_array.tolist()} must be integers")
    if np.any(iteration_array < 0) or np.any(np.diff(iteration_array) <= 0):
        raise InputError(
            f"iterations {iteration_array.tolist()} must be >= 0 and strictly increasing"
        )
    if coverage_array.shape != iteration_array.shape:
        raise InputError(
            f"coverages has shape {coverage_array.shape} but iterations has "
            f"{iteration_array.shape}; pass one coverage per iteration"
        )
    if not np.all(np.isfinite(coverage_array)) or np.any(
        (coverage_array < 0.0) | (coverage_array > 1.0)
    ):
        raise InputError(f"coverages {coverage_array.tolist()} must be finite fractions in [0, 1]")
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, int | float | np.floating):
            raise InputError(f"target {target!r} is not a number; pass a fraction or None")
        if not (math.isfinite(float(target)) and 0.0 < float(target) <= 1.0):
            raise InputError(f"target {target!r} is out of range; pass a fraction in (0, 1]")

    figure = Figure(figsize=(7.0, 4.5), dpi=DPI, facecolor="white", layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.plot(iteration_array, coverage_array, marker="o", color=EXPERT_COLOURS[0], label="coverage")
    if target is not None:
        ax.axhline(float(target), color="black", linestyle="dashed", label=f"target {target:g}")
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("PEC iteration")
    ax.set_ylabel("covered fraction of the design box")
    ax.set_title("Coverage per iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    return figure


def plot_coverage_curve(
    iterations: Sequence[int], coverages: Sequence[float], target: float | None
) -> bytes:
    """PNG of coverage against iteration, with the stopping target as a dashed line."""
    return _to_png(_build_coverage_figure(iterations, coverages, target))
