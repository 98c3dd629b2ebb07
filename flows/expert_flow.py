"""Flow `pec-expert`: one training or evaluation job, deployed to a GPU work pool.

The iteration flow launches one run per expert with `run_deployment`, so experts spread
over as many GPU machines as there are workers, and each has its own logs, state and
cancel button. The result is persisted as JSON so the parent (elsewhere) can read it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run as runtime_flow_run

from flows.credentials import apply_aws_credentials
from pec.jobs.run import run_job
from pec.jobs.spec import parse_job_spec


def expert_run_name() -> str:
    """`expert-<train|eval>-<k>-<run>-it<N>` from the spec parameter."""
    spec = runtime_flow_run.parameters.get("spec") or {}
    return (
        f"expert-{spec.get('kind', 'job')}-{spec.get('expert_id', '?')}-"
        f"{spec.get('run_name', '?')}-it{spec.get('iteration', '?')}"
    )


@flow(
    name="pec-expert",
    flow_run_name=expert_run_name,
    persist_result=True,
    result_serializer="json",
)
def pec_expert(spec: dict[str, Any], aws_credentials_block: str | None = None) -> dict[str, Any]:
    """Run one job spec here and return its result as JSON (S3 keys from the named block)."""
    logger = get_run_logger()
    apply_aws_credentials(aws_credentials_block)
    job = parse_job_spec(spec)

    def progress(iteration: int, max_iterations: int, metrics: dict[str, float]) -> None:
        shown = " ".join(f"{name}={value:.4g}" for name, value in sorted(metrics.items()))
        logger.info("progress %d/%d %s", iteration, max_iterations, shown)

    return run_job(job, on_progress=progress).model_dump(mode="json")
