"""Thread policy of training and evaluation jobs, applied: share the cores between experts in flight.

Every job of a PEC iteration runs torch (intra-op threads) and numpy/BLAS (OpenMP, MKL,
OpenBLAS pools). Left alone, each job sizes its pools to the whole machine, so K experts in
parallel fight for the same cores. The policy: threads per job = available cores // jobs in
flight (at least 1), unless the config's `threads_per_job` says otherwise. The number
travels in the job spec (`threads`); every executor applies it: the child process's and
the container's environment get the variables below, and the job itself (`run_job`, in
any process) sets torch's thread count. The number itself comes from `pec.runs.threads`,
where the run's config asks for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pec.runs.threads import available_cores as available_cores
from pec.runs.threads import job_threads as job_threads

THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
)


def thread_env(threads: int | None) -> dict[str, str]:
    """Environment variables that size a new process's thread pools ({} for None)."""
    if threads is None:
        return {}
    return {name: str(threads) for name in THREAD_ENV_VARS}


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with torch's intra-op thread count set to `threads` (restored after)."""
    if threads is None:
        yield
        return
    import torch  # lazy: a job that only moves files needs no torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
