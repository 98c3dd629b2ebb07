"""One live runner per PEC iteration: the lease a driver takes before any job starts.

Two drivers of the same (run, iteration) — two flow runs, a flow run and `pec run`, a
retry racing its original — would each train every expert and only the last state write
would notice. The first to take the iteration's lease (pec.runs.store.lease) runs it; the
second exits at once with a message naming the holder (`duplicate_run: exit`) or waits
for it (`duplicate_run: wait`, up to `lease_wait_s`). A holder that crashed stops renewing
and its lease is taken over `lease_ttl_s` later.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterator

from pec.errors import PECError
from pec.runs.config import PECConfig
from pec.runs.store import Store
from pec.runs.store.lease import LeaseHeldError, LeaseKeeper, acquire, wait_and_acquire

log = logging.getLogger(__name__)


class DuplicateRunError(PECError):
    """Another driver holds the iteration's lease; `holder` names it."""

    def __init__(self, message: str, holder: str) -> None:
        super().__init__(message)
        self.holder = holder


def process_holder(kind: str = "pec run") -> str:
    """How a local process names itself as a lease holder."""
    return f"{kind} (pid {os.getpid()} on {socket.gethostname()})"


@contextlib.contextmanager
def hold_iteration(
    store: Store,
    run_name: str,
    iteration: int,
    holder: str,
    config: PECConfig,
    owner: str | None = None,
) -> Iterator[LeaseKeeper]:
    """Hold the lease of (run, iteration) for the block; renewed meanwhile, released after.

    `owner` (default: `holder`) identifies the driver: the same owner gets its lease back.
    """
    try:
        if config.duplicate_run == "wait":
            lease = wait_and_acquire(
                store,
                run_name,
                iteration,
                holder,
                config.lease_ttl_s,
                config.lease_wait_s,
                owner=owner,
            )
        else:
            lease = acquire(store, run_name, iteration, holder, config.lease_ttl_s, owner=owner)
    except LeaseHeldError as exc:
        advice = (
            f"gave up after lease_wait_s={config.lease_wait_s:g}"
            if config.duplicate_run == "wait"
            else "set duplicate_run: wait to wait for it"
        )
        raise DuplicateRunError(f"{exc} ({advice})", exc.holder) from None
    if lease.taken_over_from is not None:
        log.warning(
            "iteration %d of run %s: took over the expired lease of %s (it stopped renewing)",
            iteration,
            run_name,
            lease.taken_over_from,
        )
    with LeaseKeeper(store, lease) as keeper:
        yield keeper


def check_still_held(keeper: LeaseKeeper) -> None:
    """Before a write that commits the iteration: refuse if our lease was taken over."""
    if keeper.lost.is_set():
        raise DuplicateRunError(
            f"{keeper.error}; this driver stops without writing the state", keeper.lease.holder
        )
