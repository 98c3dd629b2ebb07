"""How many threads each job of a run gets: available cores // jobs in flight, or the config's.

The policy lives here, in the run's layer, because the config (`PECConfig.job_threads`)
decides the number a job spec carries; the job layer applies it (`pec.jobs.threads`).
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """Cores this process may run on (CPU affinity, e.g. a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def job_threads(configured: int | None, jobs_in_flight: int, cores: int | None = None) -> int:
    """Threads per job: the configured number, else cores // jobs in flight (at least 1)."""
    if configured is not None:
        return configured
    total = available_cores() if cores is None else cores
    return max(1, total // max(1, jobs_in_flight))
