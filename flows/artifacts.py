"""What the UI shows per iteration: experts table, progress over iterations, summary markdown.

Keys are `pec-<run>-experts`, `pec-<run>-progress` and `pec-<run>-summary` (lowercase and
dashes, as Prefect requires), so each run has one versioned history per artifact.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
)

from pec.state import PECState


def artifact_key(run_name: str, what: str) -> str:
    """`pec-<run>-<what>` with every character Prefect rejects turned into a dash."""
    slug = re.sub(r"[^a-z0-9-]+", "-", run_name.lower()).strip("-")
    return f"pec-{slug}-{what}"


def experts_table(
    state: PECState, scores: dict[str, Any] | None, status: dict[int, str]
) -> list[dict[str, Any]]:
    """One row per expert: Gaussian, designs, this iteration's frontier scores, checkpoint."""
    rows: list[dict[str, Any]] = []
    score_rows = (scores or {}).get("scores") or []
    for expert in state.experts:
        levels = score_rows[expert.id] if expert.id < len(score_rows) else None
        rows.append(
            {
                "expert": expert.id,
                "status": status.get(expert.id, ""),
                "mu": f"({expert.mu[0]:.4f}, {expert.mu[1]:.5f})",
                "sigma": f"({expert.sigma[0][0]:.3g}, {expert.sigma[1][1]:.3g})",
                "designs": len(expert.designs),
                "score_mean": round(statistics.fmean(levels), 2) if levels else None,
                "score_min": min(levels) if levels else None,
                "score_max": max(levels) if levels else None,
                "checkpoint": expert.checkpoint or "",
                "failures": len(expert.failures),
            }
        )
    return rows


def summary_markdown(
    state: PECState,
    iteration: int,
    coverage: float | None,
    target: float,
    stop_reason: str | None,
    plot_uris: list[str],
    failed: dict[int, str],
) -> str:
    shown = "n/a" if coverage is None else f"{coverage:.3f}"
    lines = [
        f"# PEC run `{state.run_name}`, iteration {iteration}",
        "",
        f"- coverage after the refit: **{shown}** (target {target})",
        f"- next iteration: {state.iteration}",
        f"- finished: {stop_reason}" if stop_reason else "- finished: no",
    ]
    if failed:
        lines += ["", "## Failed experts (fell back to their previous checkpoint)", ""]
        lines += [f"- expert {k}: {message}" for k, message in sorted(failed.items())]
    lines += ["", "## Plots", ""]
    lines += [f"- [{uri.rsplit('/', 1)[-1]}]({uri})" for uri in plot_uris] or ["- none"]
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
    plot_uris: list[str],
) -> None:
    run = state.run_name
    create_table_artifact(
        experts_table(state, scores, status),
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
        summary_markdown(state, iteration, coverage, target, stop_reason, plot_uris, failed),
        key=artifact_key(run, "summary"),
        description=f"{run} iteration {iteration}",
    )
