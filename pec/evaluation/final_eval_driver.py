"""The final evaluation, written once: every expert (and the generalist) on a designs set.

`run_final_eval` takes a job runner: `pec eval-final` hands it a local runner, the
`pec-final-eval` flow a Prefect runner of mapped tasks. A policy already evaluated on the same
designs, checkpoint and protocol is reused from the store; one whose job fails is recorded as
not evaluated (a null row), so one broken checkpoint does not hide the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from pec.evaluation.baseline import baseline_eval_key, baseline_eval_spec
from pec.evaluation.designs_file import Design
from pec.evaluation.final_eval_jobs import final_eval_specs, results_payload, reusable_levels
from pec.evaluation.final_eval_summary import write_summary
from pec.jobs.runner import JobOutcome, JobRunner
from pec.jobs.spec import EvalJobResult, EvalJobSpec, TrainJobSpec
from pec.maths.protocols import ScoreName
from pec.runs import layout
from pec.runs.checkpoints import check_expert_checkpoints
from pec.runs.run import Run
from pec.runs.state import PECState

log = logging.getLogger(__name__)

# on_expert(k, levels or None, reused): progress of one expert's evaluation
OnExpert = Callable[[int, list[int] | None, bool], None]


def run_final_eval(
    run: Run,
    state: PECState,
    designs: Sequence[Design],
    stem: str,
    runner: JobRunner,
    *,
    num_episodes: int,
    start_difficulty: int,
    score: ScoreName | None = None,
    with_baseline: bool = False,
    on_expert: OnExpert | None = None,
) -> dict[str, Any]:
    """Evaluate every expert (reusing finished ones), write per-policy results and summary.json.

    `score` is the protocol (None: the run's configured one; `final_protocol` resolves and
    checks what a user asked for). A result is reused only under the same protocol. With
    `with_baseline`, the trained generalist (if any) is evaluated in the same batch, with
    the same protocol and seed; its results go under ``<run>/baseline/``. Returns summary.json.
    """
    score = run.config.score if score is None else score
    check_expert_checkpoints(run.store, state, present_only=True)  # before anything is written
    specs = final_eval_specs(run, state, designs, stem, num_episodes, start_difficulty, score)
    levels: dict[int, list[int] | None] = {}
    jobs: list[EvalJobSpec] = []
    keys: dict[int, tuple[str, str]] = {}  # id(spec) -> (result key, who)
    for k, spec in specs.items():
        if spec is None:
            levels[k] = None
            if on_expert is not None:
                on_expert(k, None, False)
            continue
        jobs.append(spec)
        keys[id(spec)] = (layout.final_eval_expert_key(run.name, stem, k), f"expert {k}")
    baseline = baseline_eval_spec(
        run, state, designs, stem, num_episodes, start_difficulty, score=score
    )
    if with_baseline and baseline is not None:
        jobs.append(baseline)
        keys[id(baseline)] = (baseline_eval_key(run.name, stem), "baseline")
    elif with_baseline:
        log.info("run %s has no trained generalist; `pec baseline train` adds one", run.name)

    def finished(spec: TrainJobSpec | EvalJobSpec) -> EvalJobResult | None:
        assert isinstance(spec, EvalJobSpec)
        done = reusable_levels(run.store, keys[id(spec)][0], spec, designs)
        return None if done is None else EvalJobResult(levels=done, expert_id=spec.expert_id)

    def record(outcome: JobOutcome) -> None:
        key, who = keys[id(outcome.spec)]
        result = outcome.eval_result()
        if result is None:
            log.warning("final evaluation of %s failed: %s", who, outcome.error)
        elif not outcome.reused:
            assert isinstance(outcome.spec, EvalJobSpec)
            payload = results_payload(outcome.spec, designs, list(result.levels), who)
            run.store.write_bytes(key, json.dumps(payload, indent=1).encode())
        if outcome.spec is not baseline:
            found = None if result is None else list(result.levels)
            levels[outcome.expert_id] = found
            if on_expert is not None:
                on_expert(outcome.expert_id, found, outcome.reused)

    runner.run_jobs(jobs, finished=finished, on_outcome=record)
    return write_summary(
        run,
        state,
        designs,
        stem,
        dict(sorted(levels.items())),
        num_episodes,
        start_difficulty,
        score,
    )
