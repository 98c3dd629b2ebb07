"""A run's history as tables: one row per iteration (`pec status`), two runs side by side (`pec compare`)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from rich.table import Table

from pec.errors import StateError
from pec.evaluation.final_eval_summary import read_summary
from pec.runs import layout, run_records
from pec.runs.state import PECState
from pec.runs.store import Store

log = logging.getLogger(__name__)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def iteration_history(store: Store, state: PECState) -> list[dict[str, Any]]:
    """Per completed (or running) iteration: coverage, frontier means, wins, failures, env steps."""
    rows: list[dict[str, Any]] = []
    after = {c.iteration: c.coverage for c in state.coverage}
    before = {h.iteration: h.coverage_before for h in state.history}
    K = len(state.experts)
    for it in range(state.iteration + 1):
        scores = run_records.read_scores(store, state.run_name, it)
        assignments = run_records.read_assignments(store, state.run_name, it)
        means: list[float | None] = [None] * K
        if scores is not None:
            source = store.uri(layout.scores_key(state.run_name, it))
            for k, row in enumerate(scores["scores"]):
                if row and k < K:
                    levels = run_records.check_levels(
                        row, len(row), f"{source}: expert {k}", StateError
                    )
                    means[k] = float(np.mean(levels))
        steps = 0.0
        trained = 0
        for k in range(K):
            metrics = run_records.read_train_metrics(store, state.run_name, k, it)
            if metrics is not None:
                trained += 1
                steps += metrics.get("env_steps", 0.0)
        failures = [e.id for e in state.experts for f in e.failures if f.iteration == it]
        if it == state.iteration and scores is None and trained == 0 and not failures:
            break  # the next iteration has not started
        rows.append(
            {
                "iteration": it,
                "coverage_before": before.get(it),
                "coverage_after": after.get(it),
                "frontier_means": means,
                "won": (assignments or {}).get("won_counts"),
                "trained": trained,
                "env_steps": steps,
                "failed_experts": failures,
            }
        )
    return rows


def status_history_table(store: Store, state: PECState) -> Table:
    """`pec status`: one row per iteration (coverage, mean frontier score per expert, failures)."""
    table = Table(title=f"{state.run_name}: history per iteration")
    for column in (
        "iteration",
        "coverage before",
        "coverage after",
        "frontier mean per expert",
        "won",
        "trained",
        "env steps",
        "failed",
    ):
        table.add_column(column)
    for row in iteration_history(store, state):
        means = ", ".join(_fmt(m, 1) for m in row["frontier_means"])
        table.add_row(
            str(row["iteration"]),
            _fmt(row["coverage_before"]),
            _fmt(row["coverage_after"]),
            f"[{means}]",
            "-" if row["won"] is None else str(row["won"]),
            str(row["trained"]),
            f"{row['env_steps']:.0f}",
            ", ".join(str(k) for k in row["failed_experts"]) or "-",
        )
    return table


def run_overview(store: Store, state: PECState) -> dict[str, Any]:
    """What `pec compare` puts side by side for one run."""
    history = iteration_history(store, state)
    stems: dict[str, dict[str, Any]] = {}
    prefix = layout.run_prefix(state.run_name) + "final_eval/"
    for key in store.list(prefix):
        if key.endswith("/summary.json") and key.count("/") == prefix.count("/") + 1:
            stem = key[len(prefix) : -len("/summary.json")]
            stems[stem] = read_summary(store, state.run_name, stem)
    return {
        "run": state.run_name,
        "K": len(state.experts),
        "iterations": state.iteration,
        "coverage": state.coverage[-1].coverage if state.coverage else state.init_realized_coverage,
        "env_steps": sum(r["env_steps"] for r in history),
        "failures": sum(len(e.failures) for e in state.experts),
        "final_eval": stems,
    }


def compare_table(a: dict[str, Any], b: dict[str, Any]) -> Table:
    table = Table(title=f"{a['run']} vs {b['run']}")
    table.add_column("")
    table.add_column(a["run"])
    table.add_column(b["run"])
    for name, digits in (
        ("K", 0),
        ("iterations", 0),
        ("coverage", 3),
        ("env_steps", 0),
        ("failures", 0),
    ):
        table.add_row(name, _fmt(float(a[name]), digits), _fmt(float(b[name]), digits))
    common = sorted(set(a["final_eval"]) & set(b["final_eval"]))
    for stem in common:
        sa, sb = a["final_eval"][stem], b["final_eval"][stem]
        same = [d["id"] for d in sa["designs"]] == [d["id"] for d in sb["designs"]]
        note = "" if same else " (different designs!)"
        table.add_row(
            f"{stem}: oracle mean{note}", _fmt(sa["oracle_mean"]), _fmt(sb["oracle_mean"])
        )
        table.add_row(
            f"{stem}: routed mean{note}", _fmt(sa["routed_mean"]), _fmt(sb["routed_mean"])
        )
    if not common:
        table.add_row("final evaluation", "no designs set in common", "")
    return table
