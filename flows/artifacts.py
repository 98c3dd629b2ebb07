"""What the UI shows per iteration: experts table, progress over iterations, summary markdown.

Keys are `pec-<run>-experts`, `pec-<run>-progress` and `pec-<run>-summary` (lowercase and
dashes, as Prefect requires), so each run has one versioned history per artifact.
"""

from __future__ import annotations

import base64
import math
import re
import statistics
from collections.abc import Callable
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)

from pec.runs.state import PECState

# Plots are embedded in the summary as data URIs, so the UI shows them whatever the store
# (a browser cannot open a local path or an s3:// URI). Bigger images are listed by key only.
MAX_EMBEDDED_PLOT_BYTES = 2_000_000


def artifact_key(run_name: str, what: str) -> str:
    """`pec-<run>-<what>` with every character Prefect rejects turned into a dash."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-")
    return f"pec-{slug}-{what}"


def experts_table(
    state: PECState,
    scores: dict[str, Any] | None,
    status: dict[int, str],
    store_key: Callable[[str], str] = str,
    trunk_status: str | None = None,
) -> list[dict[str, Any]]:
    """One row per expert: Gaussian (mean, standard deviations), designs, scores, checkpoint,
    and the PPO iterations it was given at the iteration just done when the state records a
    budget (`trunk_share`, `budget_rule: wins`); then a `trunk` row when the run has one.

    `store_key` turns a checkpoint URI into its key relative to the store root.
    """
    rows: list[dict[str, Any]] = []
    score_rows = (scores or {}).get("scores") or []
    names = ", ".join(state.design_space)  # GCR, spcf (, leg)
    budget = state.budgets[-1] if state.budgets else None
    for expert in state.experts:
        levels = score_rows[expert.id] if expert.id < len(score_rows) else None
        rows.append(
            {
                "expert": expert.id,
                "status": status.get(expert.id, ""),
                f"mu ({names})": "(" + ", ".join(f"{v:.4g}" for v in expert.mu) + ")"
                if len(expert.mu) == 3
                else f"({expert.mu[0]:.4f}, {expert.mu[1]:.5f})",
                f"std ({names})": "("
                + ", ".join(f"{math.sqrt(expert.sigma[i][i]):.3g}" for i in range(len(expert.mu)))
                + ")",
                "designs": len(expert.designs),
                "score_mean": round(statistics.fmean(levels), 2) if levels else None,
                "score_min": min(levels) if levels else None,
                "score_max": max(levels) if levels else None,
                "checkpoint": store_key(expert.checkpoint) if expert.checkpoint else "",
                "failures": len(expert.failures),
            }
        )
        if budget is not None:
            rows[-1]["ppo_iterations"] = budget.ppo_iterations[expert.id]
            rows[-1]["budget_rule"] = budget.rule
            if budget.ppo_iterations[expert.id] == 0 and not rows[-1]["status"]:
                rows[-1]["status"] = "not trained: gave its budget to the winners"
    trunk = state.trunk
    if trunk is not None:
        rows.append(
            {
                "expert": "trunk",
                "status": trunk_status or ("trained" if trunk.trained else ""),
                "checkpoint": store_key(trunk.checkpoint) if trunk.checkpoint else "",
                "failures": len(trunk.failures),
                "ppo_iterations": trunk.ppo_iterations,
                "budget_rule": "trunk",
            }
        )
    return rows


def plot_markdown(name: str, key: str, png: bytes | None) -> str:
    """The plot as an inline image (data URI), or its store key when too big or unreadable."""
    if png is None or len(png) > MAX_EMBEDDED_PLOT_BYTES or not png.startswith(b"\x89PNG"):
        return f"- `{key}` (in the run's store)"
    encoded = base64.b64encode(png).decode("ascii")
    return f"### {name}\n\n![{name}](data:image/png;base64,{encoded})\n\n`{key}`"


def summary_markdown(
    state: PECState,
    iteration: int,
    coverage: float | None,
    target: float,
    stop_reason: str | None,
    plots: list[tuple[str, bytes | None]],
    failed: dict[int, str],
) -> str:
    """`plots` are (store key, PNG bytes or None) pairs."""
    shown = "n/a" if coverage is None else f"{coverage:.3f}"
    lines = [
        f"# PEC run `{state.run_name}`, iteration {iteration}",
        "",
        f"- coverage after the refit: **{shown}** (target {target})",
        f"- next iteration: {state.iteration}",
        f"- finished: {stop_reason}" if stop_reason else "- finished: no",
    ]
    if failed:
        lines += [
            "",
            "## Failed experts (a partial training kept, or their previous checkpoint)",
            "",
        ]
        lines += [f"- expert {k}: {message}" for k, message in sorted(failed.items())]
    lines += ["", "## Plots", ""]
    for key, png in plots:
        lines += [plot_markdown(key.rsplit("/", 1)[-1].removesuffix(".png"), key, png), ""]
    if not plots:
        lines += ["- none"]
    return "\n".join(lines)


def publish_iteration(
    state: PECState,
    iteration: int,
    scores: dict[str, Any] | None,
    status: dict[int, str],
    failed: dict[int, str],
    coverage: float | None,
    target: float,
    max_iterations: int,
    stop_reason: str | None,
    plots: list[tuple[str, bytes | None]],
    store_key: Callable[[str], str] = str,
    trunk_status: str | None = None,
) -> None:
    run = state.run_name
    create_table_artifact(
        experts_table(state, scores, status, store_key, trunk_status),
        key=artifact_key(run, "experts"),
        description=f"experts of {run} after iteration {iteration}",
    )
    done = 100.0 if stop_reason else min(100.0, 100.0 * state.iteration / max_iterations)
    create_progress_artifact(
        done,
        key=artifact_key(run, "progress"),
        description=f"{run}: {state.iteration} of at most {max_iterations} iterations",
    )
    create_markdown_artifact(
        summary_markdown(state, iteration, coverage, target, stop_reason, plots, failed),
        key=artifact_key(run, "summary"),
        description=f"{run} iteration {iteration}",
    )
