"""The PEC-versus-generalist comparison: plots, numbers and a markdown summary.

Everything is recomputed from the stored score matrix (summary.json) and the baseline's
levels, never from derived fields, so a report can be regenerated after any fix. Figures
follow pec.presentation.plots: ``Figure`` + ``FigureCanvasAgg``, x = spcf, y = GCR, one colour per expert.
Written under ``final_eval/<designs_stem>/report/``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pec.errors import InputError, NotFoundError, StateError
from pec.evaluation.baseline import baseline_eval_key
from pec.evaluation.distill import student_eval_key
from pec.evaluation.final_eval import (
    ScoreSummary,
    compare_scores,
    payload_space,
    ratio,
    read_summary,
    summary_from_payload,
)
from pec.maths.design_space import DesignSpace, FloatArray, IntArray
from pec.maths.protocols import SETTINGS
from pec.maths.routing import route
from pec.presentation.plots import NO_WINNER_COLOUR, _to_png, draw_design_box, expert_colour
from pec.runs import layout
from pec.runs.store import Store

log = logging.getLogger(__name__)

MAP_RESOLUTION = 200


def report_dir(run_name: str, stem: str) -> str:
    return layout.final_eval_dir(run_name, stem) + "report/"


@dataclass(frozen=True)
class ReportData:
    """What every figure and the markdown are drawn from."""

    run_name: str
    stem: str
    space: DesignSpace
    designs: FloatArray  # (N, d) [GCR, spcf(, leg)]; maps show the spcf-GCR projection
    mus: FloatArray  # (K, d)
    summary: ScoreSummary
    baseline: FloatArray | None  # (N,) generalist levels, None when not evaluated
    protocol: dict[str, Any]
    score_routed: FloatArray | None = None  # (N,) score-informed router's levels, if recorded
    score_routed_expert: IntArray | None = None  # (N,) the experts it picked
    student: FloatArray | None = None  # (N,) the distilled student's levels, if evaluated

    @property
    def K(self) -> int:  # the paper's name
        return int(self.summary.scores.shape[0])


def report_data(
    summary_payload: dict[str, Any],
    baseline_levels: list[int] | None = None,
    student_levels: list[int] | None = None,
) -> ReportData:
    keys = payload_space(summary_payload).keys
    designs = np.asarray(
        [[d[k] for k in keys] for d in summary_payload["designs"]], dtype=np.float64
    )
    baseline = None
    if baseline_levels is not None:
        baseline = np.asarray(baseline_levels, dtype=np.float64)
        if baseline.shape != (len(designs),):
            raise InputError(
                f"baseline has {baseline.size} levels for {len(designs)} designs; evaluate the "
                "baseline on the same designs file"
            )
    student = None
    if student_levels is not None:
        student = np.asarray(student_levels, dtype=np.float64)
        if student.shape != (len(designs),):
            raise InputError(
                f"the student has {student.size} levels for {len(designs)} designs; evaluate "
                "it on the same designs file (`pec distill --designs_file`)"
            )
    return ReportData(
        run_name=str(summary_payload["run"]),
        stem=str(summary_payload["designs_stem"]),
        space=payload_space(summary_payload),
        designs=designs,
        mus=np.asarray([e["mu"] for e in summary_payload["experts"]], dtype=np.float64),
        summary=summary_from_payload(summary_payload),
        baseline=baseline,
        protocol=dict(summary_payload.get("protocol") or {}),
        score_routed=None
        if summary_payload.get("score_routed") is None
        else np.asarray(summary_payload["score_routed"], dtype=np.float64),
        score_routed_expert=None
        if summary_payload.get("score_routed_expert") is None
        else np.asarray(summary_payload["score_routed_expert"], dtype=np.int64),
        student=student,
    )


def load_report_data(store: Store, run_name: str, stem: str) -> ReportData:
    payload = read_summary(store, run_name, stem)
    baseline_levels: list[int] | None = None
    try:
        data = json.loads(store.read_bytes(baseline_eval_key(run_name, stem)))
        baseline_levels = [int(v) for v in data["levels"]]
    except NotFoundError:
        log.info("no baseline evaluation on %s; the report shows PEC only", stem)
    else:
        check_same_protocol(payload.get("protocol"), data.get("protocol"), stem)
    student_levels: list[int] | None = None
    try:
        data = json.loads(store.read_bytes(student_eval_key(run_name, stem)))
        student_levels = [int(v) for v in data["levels"]]
    except NotFoundError:
        log.info("no distilled student evaluated on %s", stem)
    else:
        check_same_protocol(payload.get("protocol"), data.get("protocol"), stem, "student")
    return report_data(payload, baseline_levels, student_levels)


def check_same_protocol(experts: Any, baseline: Any, stem: str, who: str = "generalist") -> None:
    """PEC and the generalist (or the student) are compared only under the same protocol."""
    if not isinstance(experts, dict) or not isinstance(baseline, dict):
        return  # results written before protocols were recorded
    fields = ["score", *SETTINGS.get(str(experts.get("score")), ()), "ceiling"]
    if any(experts.get(f) != baseline.get(f) for f in fields):
        command = "pec baseline eval" if who == "generalist" else "pec distill --designs_file"
        raise StateError(
            f"the {who} on '{stem}' was scored with {baseline.get('score')} (ceiling "
            f"{baseline.get('ceiling')}), the experts with {experts.get('score')} (ceiling "
            f"{experts.get('ceiling')}); run `{command} --score {experts.get('score')}` "
            f"with the experts' settings, or `pec eval-final` again with the {who}'s"
        )


# ---------------------------------------------------------------- numbers


def comparison_numbers(data: ReportData) -> dict[str, Any]:
    """The headline figures (JSON-able): means, ratios, win/tie/loss, routing agreement."""
    s = data.summary
    N = len(data.designs)
    numbers: dict[str, Any] = {
        "run": data.run_name,
        "designs": N,
        "K": data.K,
        "protocol": data.protocol,
        "pec_oracle_mean": s.oracle_mean,
        "pec_routed_mean": s.routed_mean,
        "expert_means": s.expert_means(),
        "routed_hits": s.routed_hits,
        "routed_agrees_with_oracle_expert": int(np.sum(s.routed_expert == s.oracle_expert)),
        "oracle_wins_by_expert": {int(k): int(np.sum(s.oracle_expert == k)) for k in s.evaluated},
        "baseline_mean": None,
        "pec_score_routed_mean": None,
        "student_mean": None,
        "ci95": {
            "PEC oracle": ci95(s.oracle),
            "PEC routed": ci95(s.routed),
        },
    }
    if data.score_routed is not None:
        numbers["pec_score_routed_mean"] = float(np.mean(data.score_routed))
        numbers["ci95"]["PEC routed (score-informed)"] = ci95(data.score_routed)
    if data.student is not None:
        numbers["student_mean"] = float(np.mean(data.student))
        numbers["ci95"]["distilled student"] = ci95(data.student)
    if data.baseline is not None:
        numbers["ci95"]["generalist"] = ci95(data.baseline)
        base_mean = float(np.mean(data.baseline))
        numbers["baseline_mean"] = base_mean
        numbers["oracle_over_baseline"] = ratio(s.oracle_mean, base_mean)
        numbers["routed_over_baseline"] = ratio(s.routed_mean, base_mean)
        compared = [("oracle", s.oracle, s.oracle_expert), ("routed", s.routed, s.routed_expert)]
        if data.score_routed is not None:
            numbers["score_routed_over_baseline"] = ratio(
                numbers["pec_score_routed_mean"], base_mean
            )
            picked = data.score_routed_expert
            compared.append(
                ("score_routed", data.score_routed, s.routed_expert if picked is None else picked)
            )
        if data.student is not None:
            numbers["student_over_baseline"] = ratio(numbers["student_mean"], base_mean)
            compared.append(("student", data.student, np.zeros(N, dtype=np.int64)))
        for name, scores, experts in compared:
            c = compare_scores(scores, data.baseline, experts)
            numbers[f"{name}_vs_baseline"] = {
                "wins": c.wins,
                "ties": c.ties,
                "losses": c.losses,
                "mean_diff": c.mean_diff,
                "wins_by_expert": {str(k): v for k, v in c.wins_by_expert.items()},
            }
    return numbers


def ci95(levels: FloatArray) -> float:
    """Half-width of the normal 95% interval of a mean over designs (1.96 x standard error)."""
    values = np.asarray(levels, dtype=np.float64)
    if values.size < 2:
        return 0.0
    return float(1.96 * np.std(values, ddof=1) / np.sqrt(values.size))


def comparison_rows(numbers: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per policy for a table (Prefect table artifact, CLI)."""
    base = numbers.get("baseline_mean")
    rows: list[dict[str, Any]] = []

    def row(name: str, mean: float | None, wtl: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "policy": name,
            "mean_level": None if mean is None else round(mean, 3),
            "over_baseline": None
            if mean is None or base is None or ratio(mean, base) is None
            else round(float(ratio(mean, base) or 0.0), 3),
            "wins": None if wtl is None else wtl["wins"],
            "ties": None if wtl is None else wtl["ties"],
            "losses": None if wtl is None else wtl["losses"],
        }

    rows.append(row("PEC oracle", numbers["pec_oracle_mean"], numbers.get("oracle_vs_baseline")))
    rows.append(row("PEC routed", numbers["pec_routed_mean"], numbers.get("routed_vs_baseline")))
    if numbers.get("pec_score_routed_mean") is not None:
        rows.append(
            row(
                "PEC routed (score-informed)",
                numbers["pec_score_routed_mean"],
                numbers.get("score_routed_vs_baseline"),
            )
        )
    if numbers.get("student_mean") is not None:
        rows.append(
            row("distilled student", numbers["student_mean"], numbers.get("student_vs_baseline"))
        )
    if base is not None:
        rows.append(row("generalist", base, None))
    for k, mean in enumerate(numbers["expert_means"]):
        if mean is not None:
            rows.append(row(f"expert {k}", mean, None))
    return rows


def protocol_text(protocol: dict[str, Any]) -> str:
    """One phrase saying how the scores were measured, with the protocol's ceiling."""
    if protocol.get("score") == "level_search":
        return (
            "score = highest level passed in one deterministic episode, by level search "
            f"(0..{protocol.get('search_max_level', '?')}; ceiling {protocol.get('ceiling', '?')})"
        )
    ceiling = protocol.get("ceiling")
    return (
        f"{protocol.get('num_episodes', '?')} episodes from level "
        f"{protocol.get('start_difficulty', '?')}, score = final curriculum level "
        f"(0..74{'' if ceiling is None else f'; ceiling {ceiling}'})"
    )


def markdown_summary(numbers: dict[str, Any], plot_uris: list[str]) -> str:
    def f(value: Any) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    p = numbers.get("protocol") or {}
    lines = [
        f"# PEC final evaluation of `{numbers['run']}`",
        "",
        f"{numbers['designs']} held-out designs, K={numbers['K']}, {protocol_text(p)}.",
        "",
        "| policy | mean level | / generalist | wins | ties | losses |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in comparison_rows(numbers):
        lines.append(
            f"| {r['policy']} | {f(r['mean_level'])} | {f(r['over_baseline'])} | "
            f"{'' if r['wins'] is None else r['wins']} | {'' if r['ties'] is None else r['ties']} | "
            f"{'' if r['losses'] is None else r['losses']} |"
        )
    intervals = numbers.get("ci95") or {}
    if intervals:
        lines += [
            "",
            (
                "Oracle, both routers, the student and the generalist, mean over designs ± 95% "
                "interval "
                "(1.96 standard errors):"
            ),
            "",
            "| policy | mean level ± 95% |",
            "| --- | ---: |",
        ]
        for r in comparison_rows(numbers):
            if r["policy"] in intervals:
                lines.append(
                    f"| {r['policy']} | {f(r['mean_level'])} ± {f(intervals[r['policy']])} |"
                )
    lines += [
        "",
        (
            f"- routed expert scores as well as the oracle on **{numbers['routed_hits']}** of "
            f"{numbers['designs']} designs; it is the oracle expert itself on "
            f"{numbers['routed_agrees_with_oracle_expert']}."
        ),
        (
            f"- oracle (best) expert per design: {numbers['oracle_wins_by_expert']} "
            "(ties go to the lower id)."
        ),
    ]
    if numbers.get("baseline_mean") is None:
        lines.append("- no generalist evaluated: run `pec baseline train` and `pec baseline eval`.")
    else:
        wins = numbers["oracle_vs_baseline"]["wins_by_expert"]
        lines.append(f"- wins of the PEC oracle over the generalist, by expert: {wins}.")
    lines += ["", "## Plots", ""]
    lines += [f"- [{uri.rsplit('/', 1)[-1]}]({uri})" for uri in plot_uris] or ["- none"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- figures


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
