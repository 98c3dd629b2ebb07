"""The final evaluation's report: its figures, comparison.json and report.md, written to the store.

The numbers and the markdown are `pec.evaluation.comparison`'s; the figures follow
`pec.presentation.plots`: ``Figure`` + ``FigureCanvasAgg``, x = spcf, y = GCR, one colour per
expert. Written under ``final_eval/<designs_stem>/report/``.
"""

from __future__ import annotations

import json

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pec.errors import InputError
from pec.evaluation.comparison import (
    ReportData,
    comparison_numbers,
    load_report_data,
    markdown_summary,
)
from pec.evaluation.score_summary import compare_scores
from pec.maths.design_space import DesignSpace, FloatArray
from pec.maths.routing import route
from pec.presentation.plots import NO_WINNER_COLOUR, _to_png, draw_design_box, expert_colour
from pec.runs import layout
from pec.runs.store import Store

MAP_RESOLUTION = 200


def report_dir(run_name: str, stem: str) -> str:
    return layout.final_eval_dir(run_name, stem) + "report/"


def _bins(*arrays: FloatArray) -> FloatArray:
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays])
    lo, hi = int(np.floor(values.min())), int(np.ceil(values.max()))
    edges: FloatArray = np.arange(lo - 0.5, hi + 1.5, 1.0)
    return edges


def _space_axes(ax: Axes, space: DesignSpace, title: str) -> None:
    draw_design_box(ax, space, linewidth=1.0)
    ax.set_xlim(space.spcf)
    ax.set_ylim(space.gcr)
    ax.set_xlabel("spcf")
    ax.set_ylabel("GCR")
    ax.set_title(title)


def _centres(ax: Axes, data: ReportData) -> None:
    for k in data.summary.evaluated:
        ax.plot(
            data.mus[k, 1], data.mus[k, 0], "+", color="black", markersize=12, markeredgewidth=2
        )
        ax.annotate(
            f"E{k}",
            (data.mus[k, 1], data.mus[k, 0]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=9,
        )


def _grouped_counts(ax: Axes, series: list[tuple[str, FloatArray, str]]) -> None:
    """Designs per final level, one bar per series side by side (levels are integers)."""
    values = np.concatenate([v for _, v, _ in series]).astype(np.int64)
    levels = np.arange(int(values.min()), int(values.max()) + 1)
    width = 0.8 / len(series)
    for i, (name, v, colour) in enumerate(series):
        counts = np.asarray([np.sum(v.astype(np.int64) == lvl) for lvl in levels])
        offset = (i - (len(series) - 1) / 2) * width
        ax.bar(
            levels + offset, counts, width, color=colour, label=f"{name} (mean {np.mean(v):.2f})"
        )
    ax.set_xlabel("final level")
    ax.set_ylabel("designs")
    ax.legend()


def plot_score_histograms(data: ReportData) -> bytes:
    s = data.summary
    figure = Figure(figsize=(12.0, 5.0), dpi=100)
    ax_all, ax_exp = figure.subplots(1, 2)
    series: list[tuple[str, FloatArray, str]] = []
    if data.baseline is not None:
        series.append(("generalist", data.baseline, "#555555"))
    series += [("PEC oracle", s.oracle, "#2ca02c"), ("PEC routed", s.routed, "#9467bd")]
    _grouped_counts(ax_all, series)
    ax_all.set_title("scores on held-out designs")
    _grouped_counts(ax_exp, [(f"expert {k}", s.scores[k], expert_colour(k)) for k in s.evaluated])
    ax_exp.set_title("each expert on every design")
    figure.tight_layout()
    return _to_png(figure)


def plot_difference_histogram(data: ReportData) -> bytes:
    if data.baseline is None:
        raise InputError("the difference histogram needs the generalist's levels")
    s = data.summary
    figure = Figure(figsize=(12.0, 5.0), dpi=100)
    for ax, name, scores, experts in zip(
        figure.subplots(1, 2),
        ("PEC oracle", "PEC routed"),
        (s.oracle, s.routed),
        (s.oracle_expert, s.routed_expert),
        strict=True,
    ):
        c = compare_scores(scores, data.baseline, experts)
        ax.hist(c.diff, bins=_bins(c.diff), color="#1f77b4", alpha=0.8)
        ax.axvline(0.0, color="black", linewidth=1.0)
        ax.axvline(c.mean_diff, color="#d62728", linestyle="--", label=f"mean {c.mean_diff:+.2f}")
        ax.set_title(f"{name} − generalist: W/T/L {c.wins}/{c.ties}/{c.losses}")
        ax.set_xlabel("level difference")
        ax.set_ylabel("designs")
        ax.legend()
    figure.tight_layout()
    return _to_png(figure)


def plot_win_breakdown(data: ReportData) -> bytes:
    if data.baseline is None:
        raise InputError("the win breakdown needs the generalist's levels")
    s = data.summary
    oracle = compare_scores(s.oracle, data.baseline, s.oracle_expert)
    routed = compare_scores(s.routed, data.baseline, s.routed_expert)
    figure = Figure(figsize=(12.0, 5.0), dpi=100)
    ax_bar, ax_pie = figure.subplots(1, 2)
    x = np.arange(3)
    width = 0.38
    for offset, (name, c) in zip(
        (-width / 2, width / 2), (("oracle", oracle), ("routed", routed)), strict=True
    ):
        bars = ax_bar.bar(x + offset, [c.wins, c.ties, c.losses], width, label=f"PEC {name}")
        ax_bar.bar_label(bars)
    ax_bar.set_xticks(x, ["wins", "ties", "losses"])
    ax_bar.set_ylabel("designs")
    ax_bar.set_title("PEC against the generalist")
    ax_bar.legend()
    if oracle.wins_by_expert:
        ids = list(oracle.wins_by_expert)
        ax_pie.pie(
            [oracle.wins_by_expert[k] for k in ids],
            labels=[f"expert {k}" for k in ids],
            colors=[expert_colour(k) for k in ids],
            autopct="%1.0f%%",
        )
        ax_pie.set_title("which expert wins (oracle wins)")
    else:
        ax_pie.text(0.5, 0.5, "PEC never beats the generalist", ha="center", va="center")
        ax_pie.set_axis_off()
    figure.tight_layout()
    return _to_png(figure)


def plot_spatial_map(data: ReportData) -> bytes:
    """Winning expert per design (grey when every expert scored 0) and PEC's improvement."""
    s = data.summary
    figure = Figure(figsize=(13.0, 5.5), dpi=100)
    ax_win, ax_gain = figure.subplots(1, 2)
    all_zero = np.nanmax(s.scores[s.evaluated], axis=0) == 0
    colours = [
        NO_WINNER_COLOUR if z else expert_colour(int(k))
        for k, z in zip(s.oracle_expert, all_zero, strict=True)
    ]
    ax_win.scatter(data.designs[:, 1], data.designs[:, 0], c=colours, s=18, edgecolors="none")
    _centres(ax_win, data)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=expert_colour(k), label=f"expert {k}")
        for k in s.evaluated
    ]
    handles.append(
        Line2D([], [], marker="o", linestyle="", color=NO_WINNER_COLOUR, label="all scored 0")
    )
    ax_win.legend(handles=handles, loc="upper right", fontsize=8)
    _space_axes(ax_win, data.space, "best expert per design (oracle)")
    if data.baseline is not None:
        values = s.oracle - data.baseline
        title = "improvement: PEC oracle − generalist"
        label = "level difference"
        span = max(1.0, float(np.max(np.abs(values))))
        norm = TwoSlopeNorm(vmin=-span, vcenter=0.0, vmax=span)
        points = ax_gain.scatter(
            data.designs[:, 1],
            data.designs[:, 0],
            c=values,
            cmap="RdBu",
            norm=norm,
            s=18,
            edgecolors="none",
        )
    else:
        values = s.oracle
        title = "PEC oracle score (no generalist evaluated)"
        label = "final level"
        points = ax_gain.scatter(
            data.designs[:, 1],
            data.designs[:, 0],
            c=values,
            cmap="viridis",
            s=18,
            edgecolors="none",
        )
    figure.colorbar(points, ax=ax_gain, label=label)
    _centres(ax_gain, data)
    _space_axes(ax_gain, data.space, title)
    figure.tight_layout()
    return _to_png(figure)


def plot_routing_ownership(data: ReportData) -> bytes:
    """Where each expert is routed (regions) against where it actually scores best (points)."""
    s = data.summary
    ids = np.asarray(s.evaluated, dtype=np.int64)
    n = MAP_RESOLUTION
    gcr = np.linspace(data.space.gcr[0], data.space.gcr[1], n)
    spcf = np.linspace(data.space.spcf[0], data.space.spcf[1], n)
    grid_g, grid_s = np.meshgrid(gcr, spcf, indexing="ij")
    columns = [grid_g.ravel(), grid_s.ravel()]
    where = ""
    if data.space.dim == 3:  # a 3-D run: the routing regions of the slice at the middle leg
        middle = 0.5 * (data.space.bounds[2][0] + data.space.bounds[2][1])
        columns.append(np.full(n * n, middle))
        where = f" at leg {middle:.3f} m"
    grid = np.stack(columns, axis=1)
    owner = ids[route(grid, data.mus[ids], data.space)].reshape(n, n)
    K = data.K
    cmap = ListedColormap([expert_colour(k) for k in range(K)])
    extent = (data.space.spcf[0], data.space.spcf[1], data.space.gcr[0], data.space.gcr[1])
    figure = Figure(figsize=(13.0, 5.5), dpi=100)
    ax_route, ax_best = figure.subplots(1, 2)
    for ax in (ax_route, ax_best):
        ax.imshow(
            owner,
            origin="lower",
            extent=extent,
            aspect="auto",
            cmap=cmap,
            vmin=-0.5,
            vmax=K - 0.5,
            alpha=0.25,
            interpolation="nearest",
        )
    ax_route.scatter(
        data.designs[:, 1],
        data.designs[:, 0],
        c=[expert_colour(int(k)) for k in s.routed_expert],
        s=16,
        edgecolors="none",
    )
    _centres(ax_route, data)
    _space_axes(ax_route, data.space, f"routed expert (nearest centre; regions{where})")
    agree = s.routed == s.oracle
    ax_best.scatter(
        data.designs[agree, 1],
        data.designs[agree, 0],
        c=[expert_colour(int(k)) for k in s.oracle_expert[agree]],
        s=16,
        edgecolors="none",
    )
    ax_best.scatter(
        data.designs[~agree, 1],
        data.designs[~agree, 0],
        c=[expert_colour(int(k)) for k in s.oracle_expert[~agree]],
        s=40,
        marker="x",
    )
    _centres(ax_best, data)
    _space_axes(
        ax_best,
        data.space,
        f"best expert; x = routing loses levels ({int(np.sum(~agree))}/{len(agree)})",
    )
    figure.tight_layout()
    return _to_png(figure)


def render_plots(data: ReportData) -> dict[str, bytes]:
    """File name -> PNG bytes; the comparison plots only when a generalist was evaluated."""
    plots = {
        "score_histograms.png": plot_score_histograms(data),
        "spatial_map.png": plot_spatial_map(data),
        "routing_ownership.png": plot_routing_ownership(data),
    }
    if data.baseline is not None:
        plots["difference_histogram.png"] = plot_difference_histogram(data)
        plots["win_breakdown.png"] = plot_win_breakdown(data)
    return plots


def write_report(store: Store, run_name: str, stem: str) -> dict[str, str]:
    """Write plots, comparison.json and report.md; returns {name: key} (markdown under 'markdown')."""
    data = load_report_data(store, run_name, stem)
    base = report_dir(run_name, stem)
    keys: dict[str, str] = {}
    for name, png in render_plots(data).items():
        keys[name] = base + name
        store.write_bytes(keys[name], png)
    numbers = comparison_numbers(data)
    keys["comparison"] = base + "comparison.json"
    store.write_bytes(keys["comparison"], json.dumps(numbers, indent=2).encode())
    uris = [store.uri(k) for n, k in keys.items() if n.endswith(".png")]
    keys["markdown"] = base + "report.md"
    store.write_bytes(keys["markdown"], markdown_summary(numbers, uris).encode())
    return keys
