"""Flow `pec-final-eval`: every expert (and the generalist, if trained) on a held-out designs set.

designs -> `pec.evaluation.final_eval_driver.run_final_eval` with the Prefect job runner (one
`final-eval-expert` task run per policy, at most `max_parallel_experts` in flight; policies
already evaluated on the same designs, checkpoint and protocol are reused from the store) ->
comparison report -> table and markdown artifacts. `pec eval-final` runs the same driver with
a local runner; this module only orchestrates.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifacts import artifact_key
from flows.credentials import apply_aws_credentials
from flows.tasks import PrefectJobRunner, evaluate_final_expert
from pec.errors import InputError
from pec.evaluation.comparison import (
    comparison_numbers,
    comparison_rows,
    load_report_data,
    markdown_summary,
)
from pec.evaluation.designs_file import Design, parse_designs, read_designs_file
from pec.evaluation.final_eval_driver import run_final_eval
from pec.evaluation.final_eval_jobs import designs_stem, final_protocol
from pec.maths.protocols import unused_override_warnings
from pec.presentation.report import write_report
from pec.runs import layout
from pec.runs.run import Run, load_run_state, open_run


def _slug(stem: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-") or "designs"


def _load_designs(
    run: Run,
    designs_file: str | None,
    designs: list[dict[str, Any]] | None,
    stem: str | None,
) -> tuple[list[Design], str]:
    if designs is not None:
        if not stem:
            raise InputError("designs given inline: also pass designs_stem (the output folder)")
        return parse_designs(designs, "designs parameter", run.space), stem
    if designs_file is None:
        raise InputError(
            "pass designs_file (a JSON path) or designs (inline list) and designs_stem"
        )
    return read_designs_file(Path(designs_file), run.space), stem or designs_stem(designs_file)


@flow(name="pec-final-eval", result_serializer="json")
def pec_final_eval(
    run_name: str,
    designs_file: str | None = None,
    designs: list[dict[str, Any]] | None = None,
    designs_stem: str | None = None,
    store: str = "runs",
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    score: str | None = None,
    num_episodes: int | None = None,
    start_difficulty: int | None = None,
    with_baseline: bool = True,
    aws_credentials_block: str | None = None,
) -> dict[str, Any]:
    """Final evaluation of `run_name` on a designs set, plus the comparison report.

    `score`: the protocol (default: the run's); `num_episodes` / `start_difficulty` apply to
    `score` final_level only (`pec.evaluation.final_eval_jobs.final_protocol`, as `pec eval-final`):
    under level_search they are refused, and `overrides` of them are kept with a warning.
    `aws_credentials_block`: as for the `pec` flow, S3 keys for this run's worker process.
    """
    apply_aws_credentials(aws_credentials_block)
    run = open_run(run_name, store, config, overrides)
    protocol = final_protocol(run.config, score, num_episodes, start_difficulty, flag="")
    for line in unused_override_warnings(
        protocol.score, overrides or {}, run.config.search_max_level, "overrides "
    ):
        get_run_logger().warning("%s", line)
    state, _ = load_run_state(run)
    points, stem = _load_designs(run, designs_file, designs, designs_stem)
    summary = run_final_eval(
        run,
        state,
        points,
        stem,
        PrefectJobRunner(run, eval_task=evaluate_final_expert),
        num_episodes=protocol.num_episodes,
        start_difficulty=protocol.start_difficulty,
        score=protocol.score,
        with_baseline=with_baseline,
    )
    keys = write_report(run.store, run.name, stem)
    numbers = comparison_numbers(load_report_data(run.store, run.name, stem))
    plot_uris = [run.store.uri(k) for n, k in keys.items() if n.endswith(".png")]
    create_table_artifact(
        comparison_rows(numbers),
        key=artifact_key(run.name, f"final-{_slug(stem)}"),
        description=f"{run.name}: final evaluation on {stem}",
    )
    create_markdown_artifact(
        markdown_summary(numbers, plot_uris),
        key=artifact_key(run.name, f"final-{_slug(stem)}-report"),
        description=f"{run.name}: PEC vs generalist on {stem}",
    )
    return {
        "run_name": run.name,
        "designs_stem": stem,
        "oracle_mean": summary["oracle_mean"],
        "routed_mean": summary["routed_mean"],
        "baseline_mean": numbers.get("baseline_mean"),
        "summary_uri": run.store.uri(layout.final_eval_summary_key(run.name, stem)),
        "report_uri": run.store.uri(keys["markdown"]),
    }
