"""One PEC iteration, written once: train -> crash rule -> evaluate the frontier -> refit -> plots.

`run_iteration` takes a job runner, so `pec run` (a local runner) and the `pec` flow (a
Prefect runner of mapped, cached tasks) run the same iteration and write byte-identical runs.
It also takes its fourth, soft step, the plots (`PlotStep`): drawing is the presentation
layer's, so both callers hand in the same `pec.presentation.visualize.render_all_soft`.
It follows the reference sheet's resumability table: a finished training is not repeated, a
frontier evaluation with scores.json is not repeated, and the refit is the single state write
of the iteration. The crash rule lives here too (`apply_crash_rule`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pec.errors import JobError, StateError, incomplete_training, partial_label
from pec.iteration.budget import training_budget
from pec.iteration.coverage import latest_coverage, stop_reason
from pec.iteration.frontier import (
    frontier_candidates,
    prepare_evaluation,
    reusable_scores,
    write_scores,
)
from pec.iteration.job_inputs import checkpoint_exists
from pec.iteration.lease import check_still_held, hold_iteration, process_holder
from pec.iteration.refit import refit_iteration
from pec.iteration.run_setup import initialise_run, preflight
from pec.iteration.training import prepare_training, read_train_result, record_train_result
from pec.iteration.trunk import prepare_trunk, read_trunk_result, trunk_plan
from pec.jobs.runner import JobOutcome, JobRunner, OnOutcome
from pec.jobs.spec import EvalJobSpec, TrainJobSpec
from pec.runs import layout
from pec.runs.job_records import TrainJobResult
from pec.runs.run import Run, load_run_state, write_effective_config
from pec.runs.state import ExpertFailure, PECState, TrunkState
from pec.runs.state_io import save_state
from pec.runs.store import Store
from pec.runs.store.lease import LeaseKeeper

log = logging.getLogger(__name__)

PlotStep = Callable[[Store, PECState, int | None, float | None], list[str]]
"""The iteration's plots: (store, state, iteration or None for a new run's, coverage target) ->
the store keys written. Soft: a plot failure is logged, never raised (`pec run` and the `pec`
flow pass `pec.presentation.visualize.render_all_soft`)."""


@dataclass(frozen=True)
class IterationReport:
    """What one iteration did: per expert trained, reused or failed, and where the run stands."""

    iteration: int
    trained: list[int]
    reused: list[int]
    failed: dict[int, str]
    coverage: float | None
    stop_reason: str | None
    state: PECState
    scores: dict[str, Any] | None = None
    plots: list[str] = field(default_factory=list)  # store keys of the plots written
    trunk: str | None = None  # the trunk's status when this iteration trained one

    def status(self) -> dict[int, str]:
        """Per expert "trained", "cached" (reused), "failed", or "partial: k of N iterations"
        (a training stopped early whose best checkpoint the crash rule kept)."""
        status = dict.fromkeys(self.trained, "trained")
        status.update(dict.fromkeys(self.reused, "cached"))
        for k, error in self.failed.items():
            partial = incomplete_training(error)
            status[k] = "failed" if partial is None else partial_label(*partial)
        return dict(sorted(status.items()))


# ---------------------------------------------------------------- start of a run's invocation


def start_run(
    run: Run, iteration: int | None = None, *, plot: PlotStep
) -> tuple[PECState, str, int]:
    """Load or initialise the state, refuse bad inputs, record the config; initial plots if new.

    `iteration` is the iteration the caller means to run (None: the state's current one); an
    iteration that is already done is allowed (there is nothing left to do), a future one is
    not. Nothing is written before every check passed. Returns (state, version, iteration).
    """

    def refuse_bad_inputs(state: PECState) -> None:  # before anything is written
        wanted = state.iteration if iteration is None else iteration
        if wanted < 0 or wanted > state.iteration:
            raise StateError(
                f"iteration {wanted}: run '{run.name}' is at iteration {state.iteration}; "
                f"run iteration {state.iteration} first (or leave iteration empty)"
            )
        if wanted == state.iteration:
            preflight(run, state)

    # A new run's state is checked before its first write, an existing one's after loading.
    state, version, created = initialise_run(run, check=refuse_bad_inputs)
    if not created:
        refuse_bad_inputs(state)
    if iteration is None:
        iteration = state.iteration
    write_effective_config(run)
    if created:
        plot(run.store, state, None, run.config.coverage_target)
    return state, version, iteration


# ---------------------------------------------------------------- step 1: training and crash rule


def train_experts(
    run: Run,
    state: PECState,
    runner: JobRunner,
    specs: Sequence[TrainJobSpec] | None = None,
    reuse: bool = True,
) -> list[JobOutcome]:
    """Train the experts (every expert's `prepare_training` spec unless `specs` are given).

    With `reuse`, a finished training recorded in the store is not repeated. Each new result
    is recorded (result.json) as soon as its job ends, before the state is written, so a
    crash between the two loses no training.
    """
    if specs is None:
        budget = training_budget(run, state)
        specs = [
            prepare_training(run, state, k, budget)
            for k in range(len(state.experts))
            if budget.ppo_iterations[k] > 0  # budget_rule wins: it gave its budget away
        ]
    from_store: set[int] = set()

    def finished(spec: TrainJobSpec | EvalJobSpec) -> TrainJobResult | None:
        done = read_train_result(run, spec.expert_id, spec.iteration)
        if done is not None:
            from_store.add(spec.expert_id)
        return done

    def record(outcome: JobOutcome) -> None:
        result = outcome.train_result()
        if result is not None and outcome.expert_id not in from_store:
            assert isinstance(outcome.spec, TrainJobSpec)
            record_train_result(run, outcome.spec, result)

    return runner.run_jobs(specs, finished=finished if reuse else None, on_outcome=record)


def train_trunk(
    run: Run, state: PECState, runner: JobRunner, reuse: bool = True
) -> tuple[PECState, JobOutcome]:
    """Train the trunk (`trunk_share` > 0) and fold it into the state by the crash rule.

    A finished trunk recorded in the store is not trained again (with `reuse`); a new result
    is recorded (checkpoints/trunk/result.json) as soon as its job ends.
    """
    spec = prepare_trunk(run, state)
    from_store: list[bool] = []

    def finished(_: TrainJobSpec | EvalJobSpec) -> TrainJobResult | None:
        done = read_trunk_result(run)
        if done is not None:
            from_store.append(True)
        return done

    def record(outcome: JobOutcome) -> None:
        result = outcome.train_result()
        if result is not None and not from_store:
            record_train_result(run, spec, result)

    (outcome,) = runner.run_jobs([spec], finished=finished if reuse else None, on_outcome=record)
    return apply_trunk_rule(run, state, outcome, runner.retry_hint), outcome


def apply_trunk_rule(run: Run, state: PECState, outcome: JobOutcome, retry_hint: str) -> PECState:
    """The crash rule for the trunk: its last checkpoint (model_last.pt, the policy at the end
    of its share; model_best.pt if there is none), or the last (else best) one a training
    stopped early (after its retries) wrote, recorded as partial. With neither the experts have nothing to
    fork from, so the iteration stops with one line (JobError)."""
    assert isinstance(outcome.spec, TrainJobSpec)
    plan = outcome.spec.max_iterations
    old = state.trunk
    failures = list(old.failures) if old is not None else []
    result = outcome.train_result()
    folder = layout.trunk_dir(run.name)
    kept = [
        run.store.uri(folder + name)
        for name in (layout.LAST_CHECKPOINT_FILE, layout.BEST_CHECKPOINT_FILE)
        if checkpoint_exists(run, run.store.uri(folder + name))
    ]
    partial = incomplete_training(outcome.error) if result is None else None
    if result is not None and checkpoint_exists(run, result.checkpoint_uri):
        # The fork point is the trunk's whole share: its last policy, not its best-rewarded one
        # (the reward of a curriculum's mixed levels says little about which one to fork).
        last = result.last_checkpoint_uri
        checkpoint = last if last and checkpoint_exists(run, last) else result.checkpoint_uri
        if result.warning:
            failures.append(ExpertFailure(iteration=0, message=result.warning))
    elif partial is not None and kept:
        checkpoint = kept[0]
        failures.append(
            ExpertFailure(iteration=0, message=f"{partial_label(*partial)}: {outcome.error}")
        )
    else:
        why = outcome.error or "training reported a checkpoint that does not exist in the store"
        raise JobError(
            f"iteration 0: the trunk has no checkpoint ({why}), so no expert can fork from it; "
            f"fix the cause and {retry_hint} (or --set trunk_share=0 to start the experts from "
            "scratch)"
        )
    trunk = TrunkState(ppo_iterations=plan, checkpoint=checkpoint, trained=True, failures=failures)
    return state.model_copy(update={"trunk": trunk})


def commit_trunk(
    run: Run, state: PECState, version: str, runner: JobRunner
) -> tuple[PECState, str, JobOutcome]:
    """Step mode (`pec train-trunk`): train the trunk and write the state at once."""
    if state.iteration != 0:
        raise StateError(
            f"run '{run.name}' is at iteration {state.iteration}; the trunk is trained at "
            "iteration 0 only, before the experts fork from it"
        )
    if state.trunk is not None and state.trunk.trained:
        raise StateError(
            f"run '{run.name}' already has a trained trunk ({state.trunk.checkpoint}); the "
            "experts fork from it, so it is not trained again"
        )
    new_state, outcome = train_trunk(run, state, runner, reuse=False)
    new_version = save_state(run.store, new_state, expected_version=version, previous=state)
    return new_state, new_version, outcome


def trunk_status(outcome: JobOutcome) -> str:
    """ "trained", "cached", or "partial: k of N iterations" (its best checkpoint kept)."""
    if outcome.result is not None:
        return "cached" if outcome.reused else "trained"
    partial = incomplete_training(outcome.error)
    return "failed" if partial is None else partial_label(*partial)


def apply_crash_rule(
    run: Run, state: PECState, outcomes: Sequence[JobOutcome]
) -> tuple[PECState, list[int]]:
    """Fold training outcomes into the state; returns it and the experts left with no checkpoint.

    Crash rule: a failed expert keeps its previous checkpoint, is still marked trained for
    this iteration, and the failure is recorded. A training that stopped before its PPO
    iterations were done (and was retried as often as the runner retries) keeps the best
    checkpoint it wrote instead, recorded as "partial: k of N iterations". A URI enters the
    state only if it exists.
    """
    iteration = state.iteration
    experts = list(state.experts)
    without_checkpoint: list[int] = []
    for outcome in outcomes:
        expert = experts[outcome.expert_id]
        update: dict[str, Any] = {"last_trained_pec_iter": iteration}
        failures = list(expert.failures)
        result = outcome.train_result()
        partial = incomplete_training(outcome.error) if result is None else None
        best_uri = run.store.uri(layout.best_checkpoint_key(run.name, outcome.expert_id, iteration))
        if partial is not None and checkpoint_exists(run, best_uri):
            update["checkpoint"] = best_uri
            update["trained"] = True
            failures.append(
                ExpertFailure(
                    iteration=iteration,
                    message=f"{partial_label(*partial)}: {outcome.error}",
                    fallback_checkpoint=None,
                )
            )
        elif result is not None and checkpoint_exists(run, result.checkpoint_uri):
            update["checkpoint"] = result.checkpoint_uri
            update["trained"] = True
            if result.last_checkpoint_uri and checkpoint_exists(run, result.last_checkpoint_uri):
                update["last_checkpoint"] = result.last_checkpoint_uri
            if result.warning:
                failures.append(
                    ExpertFailure(
                        iteration=iteration, message=result.warning, fallback_checkpoint=None
                    )
                )
        else:
            message = (
                outcome.error or "training reported a checkpoint that does not exist in the store"
            )
            fallback = expert.checkpoint if checkpoint_exists(run, expert.checkpoint) else None
            failures.append(
                ExpertFailure(iteration=iteration, message=message, fallback_checkpoint=fallback)
            )
            if fallback is None:
                without_checkpoint.append(outcome.expert_id)
                update["last_trained_pec_iter"] = expert.last_trained_pec_iter
        update["failures"] = failures
        experts[outcome.expert_id] = expert.model_copy(update=update)
    return state.model_copy(update={"experts": experts}), without_checkpoint


def commit_training(
    run: Run, state: PECState, version: str, outcomes: Sequence[JobOutcome]
) -> tuple[PECState, str, list[int]]:
    """Step mode (`pec train-expert`): apply the crash rule and write the state at once."""
    new_state, missing = apply_crash_rule(run, state, outcomes)
    new_version = save_state(run.store, new_state, expected_version=version, previous=state)
    return new_state, new_version, missing


def failure_messages(outcomes: Sequence[JobOutcome]) -> dict[int, str]:
    return {o.expert_id: o.error or "" for o in outcomes if o.result is None}


def no_checkpoint_error(
    iteration: int, missing: Sequence[int], failed: dict[int, str], retry_hint: str
) -> JobError:
    """The iteration cannot go on: some experts failed and have no checkpoint to fall back to."""
    return JobError(
        f"iteration {iteration}: expert(s) {list(missing)} have no checkpoint at all "
        f"({'; '.join(failed.get(k, '') for k in missing)}); fix the cause and {retry_hint}"
    )


# ---------------------------------------------------------------- step 2: frontier evaluation


def evaluate_frontier(
    run: Run,
    state: PECState,
    runner: JobRunner,
    reuse: bool = True,
    on_outcome: OnOutcome | None = None,
) -> dict[str, Any]:
    """scores.json of this iteration: with `reuse` an existing one measured under the run's
    frontier protocol (`reusable_scores`), else every expert evaluated.

    An expert without a checkpoint, or whose evaluation fails, gets a null row.
    """
    existing = reusable_scores(run, state.iteration) if reuse else None
    if existing is not None:
        return existing
    selection = frontier_candidates(run, state)
    levels: dict[int, list[int] | None] = {}
    specs: list[EvalJobSpec] = []
    for k in range(len(state.experts)):
        spec = prepare_evaluation(run, state, k, selection.designs)
        if spec is None:
            levels[k] = None
        else:
            specs.append(spec)
    for outcome in runner.run_jobs(specs, on_outcome=on_outcome):
        result = outcome.eval_result()
        if result is None:
            log.warning("expert %d could not be evaluated: %s", outcome.expert_id, outcome.error)
        levels[outcome.expert_id] = None if result is None else result.levels
    return write_scores(run, state, selection, levels)


# ---------------------------------------------------------------- the iteration


def run_iteration(
    run: Run,
    runner: JobRunner,
    loaded: tuple[PECState, str] | None = None,
    holder: str | None = None,
    owner: str | None = None,
    *,
    plot: PlotStep,
) -> IterationReport:
    """Run the state's current iteration to its refit (the iteration's one state write), then
    draw its plots with `plot`.

    Before any job starts it takes the iteration's lease for `holder` (default: this
    process; `owner` is its identity, default the holder): a second driver of the same
    iteration raises DuplicateRunError naming the holder, or waits (`duplicate_run: wait`).
    If the holder it waited for finished the iteration, the report says nothing was done.
    """
    state, _ = loaded if loaded is not None else load_run_state(run)
    preflight(run, state)
    iteration = state.iteration
    with hold_iteration(
        run.store, run.name, iteration, holder or process_holder(), run.config, owner
    ) as keeper:
        state, version = load_run_state(run)  # what a previous holder committed
        if state.iteration != iteration:
            log.info(
                "iteration %d of %s was finished by the lease's previous holder",
                iteration,
                run.name,
            )
            return IterationReport(
                iteration=iteration,
                trained=[],
                reused=[],
                failed={},
                coverage=latest_coverage(state),
                stop_reason=stop_reason(run.config, state),
                state=state,
            )
        return _run_held_iteration(run, runner, state, version, keeper, plot)


def needs_trunk(run: Run, state: PECState) -> bool:
    """Iteration 0 of a run that forks its experts from a trunk not trained yet."""
    trunk_trained = state.trunk is not None and state.trunk.trained
    return state.iteration == 0 and trunk_plan(run)[0] > 0 and not trunk_trained


def _run_held_iteration(
    run: Run,
    runner: JobRunner,
    state: PECState,
    version: str,
    keeper: LeaseKeeper,
    plot: PlotStep,
) -> IterationReport:
    iteration = state.iteration
    forked, trunk = state, None
    if needs_trunk(run, state):
        forked, trunk_outcome = train_trunk(run, state, runner)
        trunk = trunk_status(trunk_outcome)
    outcomes = train_experts(run, forked, runner)
    trained_state, missing = apply_crash_rule(run, forked, outcomes)
    failed = failure_messages(outcomes)
    if missing:
        raise no_checkpoint_error(iteration, missing, failed, runner.retry_hint)
    scores = evaluate_frontier(run, trained_state, runner)
    check_still_held(keeper)
    new_state, _ = refit_iteration(run, trained_state, version, previous=state)
    plots = plot(run.store, new_state, iteration, run.config.coverage_target)
    return IterationReport(
        iteration=iteration,
        trained=[o.expert_id for o in outcomes if o.result is not None and not o.reused],
        reused=[o.expert_id for o in outcomes if o.reused],
        failed=failed,
        coverage=latest_coverage(new_state),
        stop_reason=stop_reason(run.config, new_state),
        state=new_state,
        scores=scores,
        plots=plots,
        trunk=trunk,
    )


def run_until_done(
    run: Run,
    runner: JobRunner,
    on_iteration: Callable[[IterationReport], None] | None = None,
    *,
    plot: PlotStep,
) -> PECState:
    """`pec run`: iterations until max_pec_iterations or the coverage target."""
    state, version, _ = start_run(run, plot=plot)
    while stop_reason(run.config, state) is None:
        report = run_iteration(run, runner, (state, version), plot=plot)
        if on_iteration is not None:
            on_iteration(report)
        state, version = load_run_state(run)
    return state
