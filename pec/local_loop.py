"""PEC iterations as a plain Python loop (no Prefect): `pec run` and the benchmarks' baseline.

It follows the reference sheet's resumability table: a training whose result and checkpoint
are in the store is not repeated, a frontier evaluation with scores.json is not repeated,
and the refit is the single state write of the iteration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pec import steps
from pec.errors import JobError, PECError
from pec.jobs.executors import Executor
from pec.jobs.spec import EvalJobResult, TrainJobResult
from pec.state import PECState
from pec.visualize import render_all_soft

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IterationReport:
    iteration: int
    trained: list[int]
    reused: list[int]
    failed: dict[int, str]
    coverage: float | None
    stop_reason: str | None


def _expert_logger(expert_id: int) -> Callable[[str], None]:
    def emit(line: str) -> None:
        log.info("expert %d: %s", expert_id, line)

    return emit


def train_all(
    run: steps.Run, state: PECState, executor: Executor
) -> tuple[list[steps.TrainingOutcome], list[int]]:
    outcomes: list[steps.TrainingOutcome] = []
    reused: list[int] = []
    for k in range(len(state.experts)):
        done = steps.read_train_result(run, k, state.iteration)
        if done is not None:
            outcomes.append(steps.TrainingOutcome(k, done))
            reused.append(k)
            continue
        spec = steps.prepare_training(run, state, k)
        try:
            result = executor.execute(spec, log=_expert_logger(k))
        except PECError as exc:
            outcomes.append(steps.TrainingOutcome(k, None, str(exc)))
            continue
        assert isinstance(result, TrainJobResult)
        steps.record_train_result(run, spec, result)
        outcomes.append(steps.TrainingOutcome(k, result))
    return outcomes, reused


def evaluate_all(run: steps.Run, state: PECState, executor: Executor) -> None:
    if steps.read_scores(run, state.iteration) is not None:
        return
    selection = steps.frontier_candidates(run, state)
    levels: dict[int, list[int] | None] = {}
    for k in range(len(state.experts)):
        spec = steps.prepare_evaluation(run, state, k, selection.designs)
        if spec is None:
            levels[k] = None
            continue
        try:
            result = executor.execute(spec)
        except PECError as exc:
            log.warning("expert %d could not be evaluated: %s", k, exc)
            levels[k] = None
            continue
        assert isinstance(result, EvalJobResult)
        levels[k] = result.levels
    steps.write_scores(run, state, selection, levels)


def run_iteration(run: steps.Run, executor: Executor) -> IterationReport:
    state, version = steps.load_run_state(run)
    steps.preflight(run, state)
    iteration = state.iteration
    outcomes, reused = train_all(run, state, executor)
    trained_state, missing = steps.apply_training_outcomes(run, state, outcomes)
    failed = {o.expert_id: o.error or "" for o in outcomes if o.result is None}
    if missing:
        raise JobError(
            f"iteration {iteration}: expert(s) {missing} have no checkpoint at all "
            f"({'; '.join(failed.get(k, '') for k in missing)}); fix the cause and run again"
        )
    evaluate_all(run, trained_state, executor)
    new_state, _ = steps.refit_iteration(run, trained_state, version, previous=state)
    render_all_soft(run.store, new_state, iteration, run.config.coverage_target)
    return IterationReport(
        iteration=iteration,
        trained=[
            o.expert_id for o in outcomes if o.result is not None and o.expert_id not in reused
        ],
        reused=reused,
        failed=failed,
        coverage=steps.latest_coverage(new_state),
        stop_reason=steps.stop_reason(run.config, new_state),
    )


def run_until_done(
    run: steps.Run,
    executor: Executor,
    on_iteration: Callable[[IterationReport], None] | None = None,
) -> PECState:
    state, _, _ = steps.initialise_run(run)
    steps.preflight(run, state)  # bad inputs fail before anything is written
    steps.write_effective_config(run)
    render_all_soft(run.store, state, None, run.config.coverage_target)
    while steps.stop_reason(run.config, state) is None:
        report = run_iteration(run, executor)
        if on_iteration is not None:
            on_iteration(report)
        state, _ = steps.load_run_state(run)
    return state
