"""The PEC-versus-generalist comparison on a designs set: its numbers and its markdown summary.

Everything is recomputed from the stored score matrix (summary.json) and the generalist's
(and the distilled student's) levels, never from derived fields, so a comparison can be
regenerated after any fix. The report's figures, and the report written to the store, are
`pec.presentation.report`'s.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from pec.errors import InputError, NotFoundError, StateError
from pec.evaluation.baseline import baseline_eval_key
from pec.evaluation.distill import student_eval_key
from pec.evaluation.final_eval_summary import payload_space, read_summary, summary_from_payload
from pec.evaluation.score_summary import ScoreSummary, compare_scores, ratio
from pec.maths.design_space import DesignSpace, FloatArray, IntArray
from pec.maths.protocols import SETTINGS
from pec.runs.store import Store

log = logging.getLogger(__name__)


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
