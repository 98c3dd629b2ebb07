"""A crash-safety test hook, inert in normal use.

`tests/test_kill_resume.py` sets ``PEC_FAULT_POINT=<name>:<N>`` so a run dies at a
reproducible place; every other process passes straight through.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)

FAULT_ENV = "PEC_FAULT_POINT"
FAULT_ONCE_ENV = "PEC_FAULT_ONCE_FILE"  # optional: a marker file; the point fires only once
_fault_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Crash-safety test hook: SIGKILL this process at the N-th pass through point `name`.

    Inert unless ``PEC_FAULT_POINT=<name>:<N>`` is set (tests/support/kill_resume_driver.py sets it),
    so the kill-and-resume tests can die at reproducible places (mid-training, between a
    checkpoint and the state write, mid-refit, mid-state-write) without timing games.
    The points are listed in docs/RELIABILITY.md.
    """
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    target, _, count = wanted.rpartition(":")
    if target != name:
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if str(_fault_hits[name]) == count.strip():
        once = os.environ.get(FAULT_ONCE_ENV)
        if once:  # fire in one process only: a retry with the same environment survives
            try:
                os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                return
        log.warning("fault point %s reached %s time(s): killing this process", name, count)
        os.kill(os.getpid(), signal.SIGKILL)
