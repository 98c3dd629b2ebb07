"""Reading and writing a run's pec_state.json through a store, safely.

Writes are conditional on the version that was read, so two writers (a retried flow run
and its original, say) cannot both succeed: the loser gets ConflictError and must reload.
"""

from __future__ import annotations

import logging

from pec.errors import StateError
from pec.faults import fault_point
from pec.runs.layout import state_key
from pec.runs.state import PECState, check_successor, dump_state, parse_state
from pec.runs.store import Store

log = logging.getLogger(__name__)


def load_state(store: Store, run_name: str) -> tuple[PECState, str] | None:
    """(state, version) of the run, or None before init; a broken file raises, untouched."""
    key = state_key(run_name)
    found = store.read_versioned(key)
    if found is None:
        return None
    data, version = found
    source = store.uri(key)
    state = parse_state(data, source)
    if state.run_name != run_name:
        raise StateError(
            f"{source}: run_name is {state.run_name!r} but the file belongs to run {run_name!r}; "
            "fix run_name in the file or open the right run"
        )
    return state, version


def save_state(
    store: Store,
    state: PECState,
    expected_version: str | None,
    previous: PECState | None,
) -> str:
    """Validate, check append-only rules against ``previous``, write conditionally.

    ``expected_version`` is what :func:`load_state` returned (None for the first write).
    Returns the new version. ConflictError when someone else wrote in between.
    """
    key = state_key(state.run_name)
    data = dump_state(state)
    # Models are mutable: re-validate what will actually be written.
    checked = parse_state(data, f"new state for {store.uri(key)}")
    if previous is not None:
        check_successor(previous, checked)
    fault_point("state-before-write")
    version = store.write_conditional(key, data, expected_version)
    fault_point("state-written")
    log.info("saved %s (iteration %d)", store.uri(key), checked.iteration)
    return version
