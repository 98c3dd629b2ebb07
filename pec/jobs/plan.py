"""How a run's jobs are executed: the typed executor plan, chosen once from the configuration.

The plan is plain JSON (the Prefect tasks take it as an input): which executor, its options,
and the `pec-expert` deployment for `executor: deployment`. `local_runner` turns it into a
`LocalJobRunner` for `pec run` and the step commands; the flows run the same plan in tasks.
"""

from __future__ import annotations

from typing import Any, TypedDict

from pec.errors import ConfigError
from pec.jobs.executors import Executor, make_executor
from pec.jobs.runner import LocalJobRunner, LogFor, no_log
from pec.runs.config import ExecutorKind, PECConfig


class ExecutorPlan(TypedDict):
    kind: ExecutorKind
    options: dict[str, Any]  # keyword arguments of the executor (docker: image, gpus, ...)
    deployment: str  # the `pec-expert` deployment that `deployment` runs jobs on


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


def plan_executor(plan: ExecutorPlan) -> Executor:
    """The executor of a plan that runs jobs from this process (not through a deployment)."""
    if plan["kind"] == "deployment":
        raise ConfigError(
            "executor: 'deployment' runs experts through Prefect; use the flow "
            "(`prefect deployment run pec/main`) or pick inprocess/subprocess/docker for the CLI"
        )
    return make_executor(plan["kind"], **plan["options"])


def local_runner(config: PECConfig, log_for: LogFor = no_log) -> LocalJobRunner:
    """The runner of `pec run` and the step commands: `max_parallel_experts` jobs at a time.

    In-process jobs share this interpreter's random number generators, so they run one at a
    time whatever the configuration says (a run stays bit-identical when resumed).
    """
    plan = executor_plan(config)
    parallel = 1 if plan["kind"] == "inprocess" else config.max_parallel_experts
    return LocalJobRunner(
        plan_executor(plan),
        max_parallel=parallel,
        log_for=log_for,
        retries=len(config.job_retry_delays_s),
    )
