"""What a flow run of `pec` records about itself so that a Retry redoes the same work.

A run started by `prefect deployment run pec/main` has no `iteration` parameter; its first
attempt takes the state's current iteration and writes it into the flow run's own
parameters (and its name, `pec-<run>-it<N>`). A Retry re-reads those parameters, so it
only ever redoes that iteration, never the one its successor is running.
"""

from __future__ import annotations

import logging
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.runtime import flow_run as runtime_flow_run

log = logging.getLogger(__name__)


def pin_iteration(run_name: str, iteration: int) -> None:
    """Record `iteration` in this flow run's parameters and name (no-op outside a flow run)."""
    flow_run_id = runtime_flow_run.get_id()
    if flow_run_id is None:
        return
    with get_client(sync_client=True) as client:
        current = client.read_flow_run(UUID(str(flow_run_id)))
        parameters = {**current.parameters, "iteration": iteration}
        client.update_flow_run(
            current.id, parameters=parameters, name=f"pec-{run_name}-it{iteration}"
        )
    log.info("flow run %s pinned to iteration %d", flow_run_id, iteration)


def lease_holder() -> tuple[str, str]:
    """(holder, owner) of this flow run's iteration lease: `flow run <name> (<id>)`, and
    the id alone as the identity, so a Retry of this flow run gets the lease back."""
    flow_run_id = runtime_flow_run.get_id()
    if flow_run_id is None:
        from pec.iteration.lease import process_holder

        holder = process_holder("pec flow")
        return holder, holder
    return f"flow run {runtime_flow_run.get_name()} ({flow_run_id})", f"flow run {flow_run_id}"
