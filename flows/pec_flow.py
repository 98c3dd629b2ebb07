"""Flow `pec`: one flow run = one PEC iteration of one run, read top to bottom.

open the run -> the iteration (`pec.iteration.driver.run_iteration`: train K experts, crash rule,
evaluate the frontier, refit, plots) with the Prefect job runner, whose jobs are mapped,
cached task runs -> artifacts -> schedule iteration N+1 as a new run of the same deployment.
`pec run` runs the very same iteration with a local runner.
"""

from __future__ import annotations

from typing import Any, cast
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import FlowRun
from prefect.deployments import run_deployment
from prefect.runtime import deployment as runtime_deployment
from prefect.runtime import flow_run as runtime_flow_run

from flows.artifacts import publish_iteration
from flows.cleanup import stop_containers_hook
from flows.credentials import apply_aws_credentials
from flows.pinning import lease_holder, pin_iteration
from flows.tasks import PrefectJobRunner
from pec.errors import PECError
from pec.iteration.coverage import latest_coverage, stop_reason
from pec.iteration.driver import IterationReport, run_iteration, start_run
from pec.iteration.lease import DuplicateRunError
from pec.maths.protocols import unused_override_warnings
from pec.presentation.visualize import render_all_soft
from pec.runs import layout
from pec.runs.run import Run, open_run, open_run_store
from pec.runs.state import PECState
from pec.runs.state_io import load_state


def flow_run_name() -> str:
    """`pec-<run>-it<N>`; without an explicit iteration, N is read from the run's state."""
    parameters = runtime_flow_run.parameters
    run_name = str(parameters.get("run_name"))
    iteration = parameters.get("iteration")
    if iteration is None:
        try:
            apply_aws_credentials(parameters.get("aws_credentials_block"))
            store, _ = open_run_store(str(parameters.get("store", "runs")))
            loaded = load_state(store, run_name)
            iteration = loaded[0].iteration if loaded is not None else 0
        except Exception:  # a name is never worth failing the run for
            return f"pec-{run_name}"
    return f"pec-{run_name}-it{iteration}"


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


def read_plot(run: Run, key: str) -> bytes | None:
    """A plot's PNG for the summary artifact; a plot is never worth failing the run for."""
    try:
        return run.store.read_bytes(key)
    except PECError as exc:
        get_run_logger().warning("plot %s not shown in the summary: %s", key, exc)
        return None


def summary(
    run: Run,
    state: PECState,
    iteration: int,
    report: IterationReport | None,
    next_run: FlowRun | None,
) -> dict[str, Any]:
    return {
        "run_name": run.name,
        "iteration": iteration,
        "next_iteration": state.iteration,
        "coverage": latest_coverage(state),
        "stop_reason": stop_reason(run.config, state),
        "experts": {str(k): v for k, v in report.status().items()} if report else {},
        "failed": {str(k): v for k, v in sorted(report.failed.items())} if report else {},
        "trunk": report.trunk if report else None,
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
    aws_credentials_block: str | None = None,
) -> dict[str, Any]:
    """One PEC iteration of `run_name` (the state's current one unless `iteration` is given).

    `aws_credentials_block` names a saved prefect-aws AwsCredentials block whose keys this
    run (and every job it starts) uses for an S3 store (docs/DEPLOYING.md §1).
    """
    logger = get_run_logger()
    apply_aws_credentials(aws_credentials_block)
    run = open_run(run_name, store, config, overrides)
    for line in unused_override_warnings(
        run.config.score, overrides or {}, run.config.search_max_level, "overrides "
    ):
        logger.warning("%s", line)
    pinned = iteration is not None
    state, version, iteration = start_run(run, iteration, plot=render_all_soft)
    if not pinned:  # a Retry of this flow run only ever redoes this iteration
        pin_iteration(run.name, iteration)
    report: IterationReport | None = None
    if iteration < state.iteration:
        logger.info("iteration %d of %s is already done; nothing to train", iteration, run.name)
    elif stop_reason(run.config, state) is not None:
        logger.info("run %s is finished: %s", run.name, stop_reason(run.config, state))
    else:
        holder, owner = lease_holder()
        try:
            report = run_iteration(
                run, PrefectJobRunner(run), (state, version), holder, owner, plot=render_all_soft
            )
        except DuplicateRunError as exc:  # not a failure: the iteration is in good hands
            logger.warning("%s", exc)
            return {**summary(run, state, iteration, None, None), "duplicate_of": exc.holder}
        state = report.state
        if report.trained or report.reused or report.failed:
            publish_iteration(
                state,
                iteration,
                report.scores,
                report.status(),
                report.failed,
                report.coverage,
                run.config.coverage_target,
                run.config.max_pec_iterations,
                report.stop_reason,
                [(key, read_plot(run, key)) for key in report.plots],
                run.store.key_for_uri,
                report.trunk,
            )
    next_run: FlowRun | None = None
    deployment_id = runtime_deployment.id
    stop = stop_reason(run.config, state)
    if chain and deployment_id and stop is None and iteration + 1 == state.iteration:
        parameters = {
            "run_name": run_name,
            "store": store,
            "config": config,
            "overrides": overrides,
            "chain": chain,
            "aws_credentials_block": aws_credentials_block,
        }
        next_run = schedule_next_iteration(
            UUID(str(deployment_id)), parameters, run.name, state.iteration
        )
        logger.info("scheduled iteration %d: flow run %s", state.iteration, next_run.id)
    return summary(run, state, iteration, report, next_run)
