"""Flow `pec-final-eval`: every expert (and the generalist, if trained) on a held-out designs set.

designs -> one evaluation task per expert (mapped, at most `max_parallel_experts` in flight;
experts already evaluated on the same designs, checkpoint and protocol are reused from the
store) -> summary.json -> generalist evaluation -> comparison report -> table and markdown
artifacts. The maths and the files are `pec.final_eval`, `pec.baseline` and `pec.report`;
this module only orchestrates.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.artifacts import artifact_key
from flows.pec_flow import failure_message, open_run, run_mapped
from flows.tasks import execute_job
from pec import layout, steps
from pec.baseline import baseline_eval_key, baseline_eval_spec
from pec.designs_file import Design, parse_designs, read_designs_file
from pec.errors import InputError
from pec.final_eval import (
    designs_stem,
    final_eval_specs,
    results_payload,
    reusable_levels,
    write_summary,
)
from pec.jobs.spec import EvalJobResult, EvalJobSpec, parse_job_spec
from pec.report import (
    comparison_numbers,
    comparison_rows,
    load_report_data,
    markdown_summary,
    write_report,
)


def _slug(stem: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    return re.sub(r"[^a-z0-9-]+", "-", stem.lower()).strip("-") or "designs"


@task(
    name="final-eval-expert",
    task_run_name="final-eval-{spec[expert_id]}",
    persist_result=True,
    result_serializer="json",
)
def evaluate_final_expert(
    spec: dict[str, Any], config_hash: str, plan: dict[str, Any]
) -> dict[str, Any]:
    """One policy on every held-out design; returns the EvalJobResult as JSON."""
    job = parse_job_spec(spec)
    return execute_job(job, plan).model_dump(mode="json")


def _load_designs(
    run: steps.Run,
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
    num_episodes: int | None = None,
    start_difficulty: int | None = None,
    with_baseline: bool = True,
) -> dict[str, Any]:
    """Final evaluation of `run_name` on a designs set, plus the comparison report."""
    logger = get_run_logger()
    run = open_run(run_name, store, config, overrides)
    state, _ = steps.load_run_state(run)
    points, stem = _load_designs(run, designs_file, designs, designs_stem)
    episodes = num_episodes if num_episodes is not None else run.config.num_episodes
    start = start_difficulty if start_difficulty is not None else run.config.start_difficulty
    specs = final_eval_specs(run, state, points, stem, episodes, start)
    levels: dict[int, list[int] | None] = {k: None for k, s in specs.items() if s is None}
    pending: list[tuple[EvalJobSpec, str]] = []
    for k, spec in specs.items():
        if spec is None:
            continue
        key = layout.final_eval_expert_key(run.name, stem, k)
        done = reusable_levels(run.store, key, spec, points)
        if done is None:
            pending.append((spec, key))
        else:
            levels[k] = done
    baseline_spec = baseline_eval_spec(run, state, points, stem, episodes, start)
    if with_baseline and baseline_spec is not None:
        key = baseline_eval_key(run.name, stem)
        if reusable_levels(run.store, key, baseline_spec, points) is None:
            pending.append((baseline_spec, key))
    elif with_baseline:
        logger.info("run %s has no trained generalist; `pec baseline train` adds one", run.name)
    futures = run_mapped(
        evaluate_final_expert,
        [spec.model_dump(mode="json") for spec, _ in pending],
        run,
        run.config.max_parallel_experts,
    )
    for (spec, key), future in zip(pending, futures, strict=True):
        is_baseline = spec is baseline_spec
        who = "baseline" if is_baseline else f"expert {spec.expert_id}"
        if not future.state.is_completed():
            logger.warning("%s could not be evaluated: %s", who, failure_message(future))
            continue
        result = EvalJobResult.model_validate(future.result())
        payload = results_payload(spec, points, list(result.levels), who)
        run.store.write_bytes(key, json.dumps(payload, indent=1).encode())
        if not is_baseline:
            levels[spec.expert_id] = list(result.levels)
    summary = write_summary(run, state, points, stem, levels, episodes, start)
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
