"""Flow `pec`: one flow run = one PEC iteration of one run, read top to bottom.

load/initialise state -> train K experts (mapped, cached) -> crash rule -> evaluate the
frontier (mapped, cached) -> refit (the single state write) -> plots (soft) -> artifacts ->
schedule iteration N+1 as a new run of the same deployment. The maths and the I/O live in
`pec.steps`; `pec.local_loop` is the same iteration without Prefect.

Experts in flight are bounded by a ThreadPoolTaskRunner with `max_parallel_experts`
workers, opened per mapped step (the flow's own runner cannot depend on the config).
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger, unmapped
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.futures import PrefectFuture, wait
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task

from flows.artifacts import publish_iteration
from flows.cleanup import stop_containers_hook
from flows.storage import result_storage_for
from flows.tasks import evaluate_expert, executor_plan, train_expert
from pec import layout, steps
from pec.cli import open_run_store, resolve_config
from pec.errors import JobError, StateError
from pec.jobs.spec import EvalJobResult, TrainJobResult, TrainJobSpec
from pec.state import PECState
from pec.state_io import load_state
from pec.visualize import render_all_soft


def flow_run_name() -> str:
    """`pec-<run>-it<N>`; without an explicit iteration, N is read from the run's state."""
    parameters = runtime_flow_run.parameters
    run_name = str(parameters.get("run_name"))
    iteration = parameters.get("iteration")
    if iteration is None:
        try:
            store, _ = open_run_store(str(parameters.get("store", "runs")))
            loaded = load_state(store, run_name)
            iteration = loaded[0].iteration if loaded is not None else 0
        except Exception:  # a name is never worth failing the run for
            return f"pec-{run_name}"
    return f"pec-{run_name}-it{iteration}"


def open_run(
    run_name: str, store: str, config: str | None, overrides: dict[str, Any] | None
) -> steps.Run:
    store_obj, store_spec = open_run_store(store)
    cfg = resolve_config(store_obj, run_name, config, dict(overrides or {}))
    return steps.make_run(store_obj, store_spec, run_name, cfg)


def run_mapped(
    task: Task[..., dict[str, Any]],
    specs: list[dict[str, Any]],
    run: steps.Run,
    max_workers: int,
) -> list[PrefectFuture[dict[str, Any]]]:
    """Map `task` over job specs, at most `max_workers` in flight; wait for every outcome."""
    if not specs:
        return []
    bound = task.with_options(result_storage=result_storage_for(run))
    runner: ThreadPoolTaskRunner[Any]
    with ThreadPoolTaskRunner(max_workers=max_workers) as runner:
        futures: list[PrefectFuture[Any]] = runner.map(
            cast(Any, bound),
            {
                "spec": specs,
                "config_hash": unmapped(run.config.content_hash()),
                "plan": unmapped(executor_plan(run.config)),
            },
        )
        wait(futures)
    return list(futures)


def outcome_status(future: PrefectFuture[Any]) -> str:
    state = future.state
    if state.is_completed():
        return "cached" if state.name == "Cached" else "trained"
    return "failed"


def failure_message(future: PrefectFuture[Any]) -> str:
    state = future.state
    try:
        future.result(raise_on_failure=True)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return state.message or state.name or "failed"


def train_experts(
    run: steps.Run, state: PECState
) -> tuple[list[steps.TrainingOutcome], dict[int, str]]:
    """Every expert's training outcome (never raises for one expert's failure)."""
    specs: list[TrainJobSpec] = [
        steps.prepare_training(run, state, k) for k in range(len(state.experts))
    ]
    futures = run_mapped(
        train_expert,
        [spec.model_dump(mode="json") for spec in specs],
        run,
        run.config.max_parallel_experts,
    )
    outcomes: list[steps.TrainingOutcome] = []
    status: dict[int, str] = {}
    for spec, future in zip(specs, futures, strict=True):
        status[spec.expert_id] = outcome_status(future)
        if status[spec.expert_id] == "failed":
            outcomes.append(steps.TrainingOutcome(spec.expert_id, None, failure_message(future)))
            continue
        result = TrainJobResult.model_validate(future.result())
        steps.record_train_result(run, spec, result)
        outcomes.append(steps.TrainingOutcome(spec.expert_id, result))
    return outcomes, status


def evaluate_frontier(run: steps.Run, state: PECState) -> dict[str, Any]:
    """scores.json of this iteration: reused if written, else every expert evaluated."""
    logger = get_run_logger()
    existing = steps.read_scores(run, state.iteration)
    if existing is not None:
        return existing
    selection = steps.frontier_candidates(run, state)
    levels: dict[int, list[int] | None] = {}
    specs = []
    for k in range(len(state.experts)):
        spec = steps.prepare_evaluation(run, state, k, selection.designs)
        if spec is None:
            levels[k] = None
        else:
            specs.append(spec)
    futures = run_mapped(
        evaluate_expert,
        [spec.model_dump(mode="json") for spec in specs],
        run,
        run.config.max_parallel_experts,
    )
    for spec, future in zip(specs, futures, strict=True):
        if future.state.is_completed():
            levels[spec.expert_id] = EvalJobResult.model_validate(future.result()).levels
        else:
            logger.warning(
                "expert %d could not be evaluated: %s", spec.expert_id, failure_message(future)
            )
            levels[spec.expert_id] = None
    return steps.write_scores(run, state, selection, levels)


def schedule_next_iteration(
    deployment: str | UUID, parameters: dict[str, Any], run_name: str, next_iteration: int
) -> FlowRun:
    """Iteration N+1 as a new, detached run of the deployment; a repeat returns the same run."""
    return cast(
        FlowRun,
        run_deployment(
            deployment,
            parameters={**parameters, "iteration": next_iteration},
            timeout=0,
            as_subflow=False,
            idempotency_key=f"{run_name}/it{next_iteration}",
            flow_run_name=f"pec-{run_name}-it{next_iteration}",
        ),
    )


def summary(
    run: steps.Run,
    state: PECState,
    iteration: int,
    status: dict[int, str],
    failed: dict[int, str],
    next_run: FlowRun | None,
) -> dict[str, Any]:
    return {
        "run_name": run.name,
        "iteration": iteration,
        "next_iteration": state.iteration,
        "coverage": steps.latest_coverage(state),
        "stop_reason": steps.stop_reason(run.config, state),
        "experts": {str(k): v for k, v in sorted(status.items())},
        "failed": {str(k): v for k, v in sorted(failed.items())},
        "state_uri": run.store.uri(layout.state_key(run.name)),
        "next_flow_run_id": str(next_run.id) if next_run is not None else None,
    }


@flow(
    name="pec",
    flow_run_name=flow_run_name,
    result_serializer="json",
    on_cancellation=[stop_containers_hook],
    on_crashed=[stop_containers_hook],
)
def pec_flow(
    run_name: str,
    store: str = "runs",
    config: str | None = None,
    overrides: dict[str, Any] | None = None,
    iteration: int | None = None,
    chain: bool = True,
) -> dict[str, Any]:
    """One PEC iteration of `run_name` (the state's current one unless `iteration` is given)."""
    logger = get_run_logger()
    run = open_run(run_name, store, config, overrides)
    state, version, created = steps.initialise_run(run)
    if iteration is None:
        iteration = state.iteration
    if iteration < 0 or iteration > state.iteration:
        raise StateError(
            f"iteration {iteration}: run '{run.name}' is at iteration {state.iteration}; "
            f"run iteration {state.iteration} first (or leave iteration empty)"
        )
    if iteration == state.iteration:
        steps.preflight(run, state)  # bad inputs fail before anything is written
    steps.write_effective_config(run)
    if created:
        render_all_soft(run.store, state, None, run.config.coverage_target)
    status: dict[int, str] = {}
    failed: dict[int, str] = {}
    if iteration < state.iteration:
        logger.info("iteration %d of %s is already done; nothing to train", iteration, run.name)
    elif steps.stop_reason(run.config, state) is not None:
        logger.info("run %s is finished: %s", run.name, steps.stop_reason(run.config, state))
    else:
        outcomes, status = train_experts(run, state)
        failed = {o.expert_id: o.error or "" for o in outcomes if o.result is None}
        trained_state, missing = steps.apply_training_outcomes(run, state, outcomes)
        if missing:
            raise JobError(
                f"iteration {iteration}: expert(s) {missing} have no checkpoint at all "
                f"({'; '.join(failed.get(k, '') for k in missing)}); "
                "fix the cause and Retry this flow run"
            )
        scores = evaluate_frontier(run, trained_state)
        state, _ = steps.refit_iteration(run, trained_state, version, previous=state)
        plots = render_all_soft(run.store, state, iteration, run.config.coverage_target)
        stop = steps.stop_reason(run.config, state)
        publish_iteration(
            state,
            iteration,
            scores,
            status,
            failed,
            steps.latest_coverage(state),
            run.config.coverage_target,
            run.config.max_pec_iterations,
            stop,
            [run.store.uri(key) for key in plots],
        )
    next_run: FlowRun | None = None
    deployment_id = runtime_deployment.id
    stop = steps.stop_reason(run.config, state)
    if chain and deployment_id and stop is None and iteration + 1 == state.iteration:
        parameters = {
            "run_name": run_name,
            "store": store,
            "config": config,
            "overrides": overrides,
            "chain": chain,
        }
        next_run = schedule_next_iteration(
            UUID(str(deployment_id)), parameters, run.name, state.iteration
        )
        logger.info("scheduled iteration %d: flow run %s", state.iteration, next_run.id)
    return summary(run, state, iteration, status, failed, next_run)
