"""The job tasks and the Prefect job runner that maps them: pec's drivers, run by Prefect.

`train-expert` and `evaluate-expert` are thin wrappers around a job spec (pec.jobs) and the
run's executor plan; their result is the job's JSON result. The cache key (run, iteration,
job kind, expert, config hash) makes a re-run, a Retry or a restart skip every job that
already finished, wherever it ran. `PrefectJobRunner` is the `pec.jobs.runner.JobRunner` the
flows hand to pec's drivers (one PEC iteration, the final evaluation).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from prefect import get_run_logger, task, unmapped
from prefect.context import TaskRunContext
from prefect.futures import PrefectFuture, as_completed
from prefect.runtime import flow_run as runtime_flow_run
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import Task

from flows.children import CHILD_WATCHER, child_key, start_or_adopt_child
from flows.storage import result_storage_for
from pec.errors import (
    MESSAGE_LIMIT,
    ConflictError,
    IncompleteTrainingError,
    JobError,
    NotFoundError,
    StoreError,
    incomplete_training,
    one_line,
    quoted,
)
from pec.jobs.plan import ExecutorPlan, executor_plan, plan_executor
from pec.jobs.runner import FinishedLookup, JobOutcome, JobSpecs, OnOutcome
from pec.jobs.spec import EvalJobResult, EvalJobSpec, TrainJobSpec, parse_job_result, parse_job_spec
from pec.runs.job_records import TrainJobResult
from pec.runs.run import Run

# A store outage longer than botocore's own retries (seconds) gets two more task attempts.
TASK_RETRIES = 2
TASK_RETRY_DELAYS_S: list[float] = [30.0, 120.0]


def transient_storage_failure(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a job only when the store was unreachable, never for the job's own verdict.

    A job's checkpoint upload failing shows up as a JobError caused by a StoreError, so the
    exception chain is searched; a lost race or a missing object is not transient.
    """
    try:
        state.result()
    except Exception as exc:  # classifying the failure is the point
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, StoreError) and not isinstance(seen, NotFoundError | ConflictError):
                return True
            seen = seen.__cause__ or seen.__context__
    return False


def worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """A transient store failure, or a training that stopped before its PPO iterations were
    done (its retry continues from model_last.pt; issue 13)."""
    if transient_storage_failure(task, task_run, state):
        return True
    try:
        state.result()
    except IncompleteTrainingError:
        return True
    except Exception as exc:
        return incomplete_training(str(exc)) is not None
    return False


def expert_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """`<run>/it<N>/<train|eval>-<k>/<config hash>`: also the result's path in the storage."""
    spec = parameters["spec"]
    job = "trunk" if spec.get("role") == "trunk" else f"{spec['kind']}-{spec['expert_id']}"
    return f"{spec['run_name']}/it{spec['iteration']}/{job}/{parameters['config_hash']}"


def execute_job(
    spec: TrainJobSpec | EvalJobSpec, plan: ExecutorPlan
) -> TrainJobResult | EvalJobResult:
    """Run one job where the plan says; a failure raises (so the task run shows Failed)."""
    if plan["kind"] == "deployment":
        return _execute_as_deployment(spec, str(plan["deployment"]))
    logger = get_run_logger()
    return plan_executor(plan).execute(spec, log=logger.info)


def _execute_as_deployment(
    spec: TrainJobSpec | EvalJobSpec, deployment: str
) -> TrainJobResult | EvalJobResult:
    """A `pec-expert` flow run (e.g. on a GPU pool), awaited; cancelling us cancels it.

    The child is started, or adopted, under its idempotency key (flows.children), so a
    retried parent never runs a job twice; its end is learnt from the shared watcher.
    """
    kind = "train" if isinstance(spec, TrainJobSpec) else "eval"
    parameters: dict[str, Any] = {"spec": spec.model_dump(mode="json")}
    # the iteration's credentials block (by name, never keys) reaches the expert's worker too
    credentials = runtime_flow_run.parameters.get("aws_credentials_block")
    if credentials:
        parameters["aws_credentials_block"] = credentials
    child = start_or_adopt_child(
        deployment,
        parameters,
        flow_run_name=(
            f"trunk-train-{spec.run_name}-it0"
            if isinstance(spec, TrainJobSpec) and spec.role == "trunk"
            else f"expert-{kind}-{spec.expert_id}-{spec.run_name}-it{spec.iteration}"
        ),
        key=child_key(spec),
        expert_id=spec.expert_id,
    )
    if child.state is None or not child.state.is_final():
        child = CHILD_WATCHER.wait(child.id)
    state = child.state
    if state is None or not state.is_completed():
        name = state.name if state is not None else "unknown"
        message = state.message if state is not None else ""
        raise JobError(
            f"expert flow run {child.name!r} of deployment {deployment!r} ended {name}: "
            f"{message}; open it in the UI, fix the cause and retry this flow run"
        )
    data = state.result(raise_on_failure=True)
    if not isinstance(data, dict):
        raise JobError(
            f"expert flow run {child.name!r} returned {type(data).__name__}, not a result dict; "
            "deploy flows/expert_flow.py:pec_expert with JSON result persistence"
        )
    return parse_job_result(spec, json.dumps(data))


JobTask = Task[[dict[str, Any], str, ExecutorPlan], dict[str, Any]]


def _job_task(name: str, doc: str, run_name: str | None = None) -> JobTask:
    """A cached, JSON-persisted task around one job spec; train and evaluate differ by name.

    Its task runs are called `<name>-<expert id>`, or `run_name` (the trunk's one job)."""

    def run(spec: dict[str, Any], config_hash: str, plan: ExecutorPlan) -> dict[str, Any]:
        return execute_job(parse_job_spec(spec), plan).model_dump(mode="json")

    run.__doc__ = doc
    run.__name__ = run.__qualname__ = name.replace("-", "_")
    return task(
        name=name,
        task_run_name=run_name or name + "-{spec[expert_id]}",
        cache_key_fn=expert_cache_key,
        retries=TASK_RETRIES,
        retry_delay_seconds=TASK_RETRY_DELAYS_S,
        retry_condition_fn=worth_retrying,
        persist_result=True,
        result_serializer="json",
    )(run)


train_expert = _job_task("train-expert", "Train one expert; returns the TrainJobResult as JSON.")
train_trunk = _job_task(
    "train-trunk",
    "Train the trunk every expert forks from (trunk_share); returns the TrainJobResult as JSON.",
    run_name="train-trunk",
)
evaluate_expert = _job_task(
    "evaluate-expert", "Evaluate one expert on the frontier; returns the EvalJobResult as JSON."
)


@task(
    name="final-eval-expert",
    task_run_name="final-eval-{spec[expert_id]}",
    persist_result=True,
    result_serializer="json",
)
def evaluate_final_expert(
    spec: dict[str, Any], config_hash: str, plan: ExecutorPlan
) -> dict[str, Any]:
    """One policy on every held-out design; returns the EvalJobResult as JSON (not cached:
    the final-evaluation driver reuses finished evaluations from the store)."""
    return execute_job(parse_job_spec(spec), plan).model_dump(mode="json")


# ---------------------------------------------------------------- the Prefect job runner


def run_mapped(
    job_task: Task[..., dict[str, Any]],
    specs: list[dict[str, Any]],
    run: Run,
    max_workers: int,
    on_done: Callable[[int, PrefectFuture[dict[str, Any]]], None] | None = None,
) -> list[PrefectFuture[dict[str, Any]]]:
    """Map `job_task` over job specs, at most `max_workers` in flight; wait for every outcome.

    `on_done(index, future)` is called as each task run ends, in the order they end, so a
    finished job is recorded while slower ones still run. The ThreadPoolTaskRunner is
    opened per mapped step (the flow's own runner cannot depend on the run's configuration).
    """
    if not specs:
        return []
    delays = list(run.config.job_retry_delays_s)
    bound = job_task.with_options(
        result_storage=result_storage_for(run),
        retries=len(delays),
        retry_delay_seconds=delays or 0,
    )
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
        index = {id(future): i for i, future in enumerate(futures)}
        for future in as_completed(futures):
            future.wait()  # settles the future's final state (as_completed does not)
            if on_done is not None:
                on_done(index[id(future)], future)
    return list(futures)


def failure_message(future: PrefectFuture[Any]) -> str:
    state = future.state
    try:
        future.result(raise_on_failure=True)
    except Exception as exc:
        return quoted(exc, MESSAGE_LIMIT)
    return one_line(state.message or state.name or "failed", MESSAGE_LIMIT)


def job_outcome(spec: TrainJobSpec | EvalJobSpec, future: PrefectFuture[Any]) -> JobOutcome:
    """A task run's end as a JobOutcome; a Cached task run is a reused job."""
    state = future.state
    if not state.is_completed():
        return JobOutcome(spec, None, failure_message(future))
    data = future.result()
    result: TrainJobResult | EvalJobResult = (
        TrainJobResult.model_validate(data)
        if isinstance(spec, TrainJobSpec)
        else EvalJobResult.model_validate(data)
    )
    return JobOutcome(spec, result, reused=state.name == "Cached")


class PrefectJobRunner:
    """Runs pec's job batches as mapped task runs, at most `max_parallel_experts` in flight.

    The iteration's tasks (`train-expert`, `evaluate-expert`) are cached under
    `expert_cache_key`, so the cache decides what is reused and a Retry shows Cached task
    runs; for a task without a cache (`final-eval-expert`) the driver's store lookup does.
    """

    retry_hint = "Retry this flow run"

    def __init__(
        self,
        run: Run,
        train_task: Task[..., dict[str, Any]] | None = None,
        eval_task: Task[..., dict[str, Any]] | None = None,
    ) -> None:
        self.run = run
        self.train_task = train_task if train_task is not None else train_expert
        self.eval_task = eval_task if eval_task is not None else evaluate_expert
        self.trunk_task = train_trunk if train_task is None else train_task

    def _task_for(self, spec: TrainJobSpec | EvalJobSpec) -> Task[..., dict[str, Any]]:
        if isinstance(spec, TrainJobSpec):
            return self.trunk_task if spec.role == "trunk" else self.train_task
        return self.eval_task

    def run_jobs(
        self,
        specs: JobSpecs,
        finished: FinishedLookup | None = None,
        on_outcome: OnOutcome | None = None,
    ) -> list[JobOutcome]:
        outcomes: dict[int, JobOutcome] = {}
        pending: dict[int, list[int]] = {}  # id(task) -> indexes of specs it runs
        tasks: dict[int, Task[..., dict[str, Any]]] = {}
        for i, spec in enumerate(specs):
            job_task = self._task_for(spec)
            cached = getattr(job_task, "cache_key_fn", None) is not None
            done = finished(spec) if finished is not None and not cached else None
            if done is not None:
                outcomes[i] = JobOutcome(spec, done, reused=True)
                if on_outcome is not None:
                    on_outcome(outcomes[i])
                continue
            tasks[id(job_task)] = job_task
            pending.setdefault(id(job_task), []).append(i)
        for key, indexes in pending.items():

            def finish(j: int, future: PrefectFuture[Any], indexes: list[int] = indexes) -> None:
                i = indexes[j]
                outcomes[i] = job_outcome(specs[i], future)
                if on_outcome is not None:  # recorded now, not after the whole batch
                    on_outcome(outcomes[i])

            run_mapped(
                tasks[key],
                [specs[i].model_dump(mode="json") for i in indexes],
                self.run,
                self.run.config.max_parallel_experts,
                on_done=finish,
            )
        return [outcomes[i] for i in range(len(specs))]
