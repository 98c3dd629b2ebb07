"""Is a checkpoint the run refers to safe and complete to load? Checked before anything is written.

Every command and flow that loads an expert's checkpoint (training warm starts, frontier and
final evaluation, export, routing) asks here first, so a truncated file or a pickle naming
arbitrary callables is refused with one line naming the expert, the file and the fix,
instead of degrading the run later (an expert silently left out of scores.json, say).
Checkpoints are read the way jobs read them: ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable
from typing import Literal

from pec.errors import NotFoundError, StateError, StoreError, one_line
from pec.runs import layout
from pec.runs.state import PECState
from pec.runs.store import Store


def check_checkpoint(store: Store, run_name: str, uri: str, what: str) -> None:
    """`uri` lies in the run's own prefix, exists, is a torch archive and loads weights-only.

    `what` names it in the error (e.g. "expert 1's checkpoint <uri>"); StateError otherwise.
    """
    try:
        key = store.key_for_uri(uri)
    except StoreError as exc:
        raise StateError(f"{what} is not in this run's store ({one_line(exc)})") from None
    if not key.startswith(layout.run_prefix(run_name)):
        raise StateError(
            f"{what} lies outside the run's prefix {layout.run_prefix(run_name)}; a run only "
            "reads its own checkpoints: fix the path in pec_state.json"
        )
    try:
        data = store.read_bytes(key)
    except NotFoundError:
        raise StateError(
            f"{what} does not exist; restore it or set that expert's checkpoint to a previous "
            "one in pec_state.json"
        ) from None
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise StateError(
            f"{what} is not a readable checkpoint (truncated or corrupt); restore it from "
            "the store's backup or a previous iteration"
        )
    check_weights_only(data, what)


def check_weights_only(data: bytes, what: str) -> None:
    """StateError unless `data` loads with ``weights_only=True`` (tensors, plain containers)."""
    import torch

    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure of the safe load means a bad file
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        named = [line for line in lines if "global" in line.lower() or "Unpickler" in line]
        reason = one_line((named or lines or [type(exc).__name__])[0], 160)
        raise StateError(
            f"{what} is not a readable checkpoint: the weights-only load refuses it ({reason}); "
            "restore it from a previous iteration, never load it with weights_only=False"
        ) from None


def expert_checkpoints(
    state: PECState, which: Literal["best", "last"] = "best"
) -> Iterable[tuple[int, str]]:
    """(expert id, URI) of every expert's current best (or last) checkpoint it has."""
    for expert in state.experts:
        uri = expert.checkpoint if which == "best" else expert.last_checkpoint
        if uri is not None:
            yield expert.id, uri


def check_expert_checkpoints(
    store: Store,
    state: PECState,
    which: Literal["best", "last"] = "best",
    *,
    present_only: bool = False,
) -> None:
    """Refuse (StateError, one line) the first expert checkpoint that is not safe to load.

    With `present_only`, a checkpoint missing from the store is passed over (the caller
    treats that expert as not evaluated); an unreadable one is always refused.
    """
    for expert_id, uri in expert_checkpoints(state, which):
        if present_only and not _exists(store, uri):
            continue
        check_checkpoint(store, state.run_name, uri, f"expert {expert_id}'s checkpoint {uri}")


def _exists(store: Store, uri: str) -> bool:
    try:
        return store.exists(store.key_for_uri(uri))
    except Exception:  # a URI of another store: check_checkpoint names it
        return True
