"""Stop a run's expert containers when its flow run is cancelled or crashes.

The docker executor stops its container when the task itself is interrupted, but a
cancelled flow process may die before its worker threads notice; these hooks make sure no
GPU container outlives the flow run that started it. Containers are found by the labels the
executor puts on them (`pec.job=1`, `pec.runs.run=<run>`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from prefect.client.schemas.objects import FlowRun, State

from pec.runs.run import open_run

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30


def _docker_from_env() -> Any:
    # importlib: the repository's docker/ folder would shadow docker-py for the type checker
    return importlib.import_module("docker").from_env()


def stop_run_containers(
    run_name: str, docker_client_factory: Callable[[], Any] = _docker_from_env
) -> list[str]:
    """Stop every running expert container of `run_name`; returns their ids."""
    client = docker_client_factory()
    containers = client.containers.list(
        filters={"label": ["pec.job=1", f"pec.runs.run={run_name}"]}
    )
    stopped: list[str] = []
    for container in containers:
        try:
            container.stop(timeout=STOP_TIMEOUT_S)
            stopped.append(str(container.id))
        except Exception as exc:  # one stuck container must not keep the others running
            logger.warning("could not stop container %s: %s", container.id, exc)
    return stopped


def stop_containers_hook(flow: Any, flow_run: FlowRun, state: State[Any]) -> None:
    """on_cancellation / on_crashed hook of `pec`: only acts when experts run in Docker."""
    parameters = flow_run.parameters
    overrides = parameters.get("overrides") or {}
    try:
        run = open_run(
            str(parameters["run_name"]),
            str(parameters.get("store", "runs")),
            parameters.get("config"),
            overrides,
        )
        if run.config.executor != "docker":
            return
        stopped = stop_run_containers(run.name)
    except Exception as exc:  # a hook never changes the run's final state
        logger.warning("could not stop the expert containers of %s: %s", flow_run.name, exc)
        return
    if stopped:
        logger.info("stopped %d expert container(s) of %s", len(stopped), run.name)
