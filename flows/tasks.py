"""The two mapped tasks of an iteration: train one expert, evaluate one expert.

Each is a thin wrapper around a job spec (pec.jobs) and one of the executors; its result is
the job's JSON result. The cache key (run, iteration, job kind, expert, config hash) makes a
re-run, a Retry or a restart skip every job that already finished, wherever it ran.
"""

from __future__ import annotations

import json
from typing import Any, cast

from prefect import get_run_logger, task
from prefect.client.schemas.objects import FlowRun
from prefect.context import TaskRunContext
from prefect.deployments import run_deployment

from pec.config import PECConfig
from pec.errors import ConflictError, JobError, NotFoundError, StoreError
from pec.jobs.executors import make_executor
from pec.jobs.spec import (
    EvalJobResult,
    EvalJobSpec,
    TrainJobResult,
    TrainJobSpec,
    parse_job_result,
    parse_job_spec,
)

# An executor plan is plain JSON (a task input): {"kind": ..., "options": {...}, "deployment": ...}
ExecutorPlan = dict[str, Any]

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
    except Exception as exc:  # noqa: BLE001 - classifying the failure is the point
        seen: BaseException | None = exc
        while seen is not None:
            if isinstance(seen, StoreError) and not isinstance(seen, NotFoundError | ConflictError):
                return True
            seen = seen.__cause__ or seen.__context__
    return False


def executor_plan(config: PECConfig) -> ExecutorPlan:
    """How this run's experts are executed, as chosen by `executor` in the configuration."""
    options: dict[str, Any] = {}
    if config.executor == "docker":
        options = config.docker_options()
    return {
        "kind": config.executor,
        "options": options,
        "deployment": config.expert_deployment,
    }


def expert_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """`<run>/it<N>/<train|eval>-<k>/<config hash>`: also the result's path in the storage."""
    spec = parameters["spec"]
    return (
        f"{spec['run_name']}/it{spec['iteration']}/{spec['kind']}-{spec['expert_id']}/"
        f"{parameters['config_hash']}"
    )


def execute_job(
    spec: TrainJobSpec | EvalJobSpec, plan: ExecutorPlan
) -> TrainJobResult | EvalJobResult:
    """Run one job where the plan says; a failure raises (so the task run shows Failed)."""
    if plan["kind"] == "deployment":
        return _execute_as_deployment(spec, str(plan["deployment"]))
    logger = get_run_logger()
    executor = make_executor(str(plan["kind"]), **dict(plan.get("options") or {}))
    return executor.execute(spec, log=logger.info)


def _execute_as_deployment(
    spec: TrainJobSpec | EvalJobSpec, deployment: str
) -> TrainJobResult | EvalJobResult:
    """A `pec-expert` flow run (e.g. on a GPU pool), awaited; cancelling us cancels it."""
    kind = "train" if isinstance(spec, TrainJobSpec) else "eval"
    child = cast(
        FlowRun,
        run_deployment(
            deployment,
            parameters={"spec": spec.model_dump(mode="json")},
            timeout=None,
            as_subflow=True,
            flow_run_name=f"expert-{kind}-{spec.expert_id}-{spec.run_name}-it{spec.iteration}",
        ),
    )
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


def _job_task(name: str, doc: str) -> Any:
    """A cached, JSON-persisted task around one job spec; train and evaluate differ by name."""

    def run(spec: dict[str, Any], config_hash: str, plan: ExecutorPlan) -> dict[str, Any]:
        return execute_job(parse_job_spec(spec), plan).model_dump(mode="json")

    run.__doc__ = doc
    run.__name__ = run.__qualname__ = name.replace("-", "_")
    return task(
        run,
        name=name,
        task_run_name=name + "-{spec[expert_id]}",
        cache_key_fn=expert_cache_key,
        retries=TASK_RETRIES,
        retry_delay_seconds=TASK_RETRY_DELAYS_S,
        retry_condition_fn=transient_storage_failure,
        persist_result=True,
        result_serializer="json",
    )


train_expert = _job_task("train-expert", "Train one expert; returns the TrainJobResult as JSON.")
evaluate_expert = _job_task(
    "evaluate-expert", "Evaluate one expert on the frontier; returns the EvalJobResult as JSON."
)
