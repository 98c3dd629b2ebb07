"""The job contract: a training or evaluation spec in, a small JSON result out.

Executors (`pec.jobs.executors`) run the same job in-process, as a subprocess, or in a
container; the flow never needs to know which.
"""

from __future__ import annotations

from pec.jobs.spec import (
    EvalJobResult,
    EvalJobSpec,
    JobResult,
    JobSpec,
    TrainJobSpec,
    parse_job_result,
    parse_job_spec,
)
from pec.runs.job_records import StoreSpec, TrainJobResult

__all__ = [
    "EvalJobResult",
    "EvalJobSpec",
    "JobResult",
    "JobSpec",
    "StoreSpec",
    "TrainJobResult",
    "TrainJobSpec",
    "parse_job_result",
    "parse_job_spec",
]
