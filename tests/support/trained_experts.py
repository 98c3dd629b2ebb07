"""A run whose experts hold given checkpoints, as after one trained iteration (iteration 0)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pec.iteration.driver import run_until_done
from pec.jobs.executors import InProcessExecutor
from pec.jobs.runner import LocalJobRunner
from pec.presentation.visualize import render_all_soft
from pec.runs import layout
from pec.runs.config import load_config
from pec.runs.run import make_run, open_run_store
from pec.runs.state import PECState
from pec.runs.state_io import load_state, save_state
from pec.runs.store import Store


def give_experts_checkpoints(
    store: Store,
    run_name: str,
    state: PECState,
    version: str,
    checkpoints: Sequence[Path | bytes],
) -> PECState:
    """Store checkpoint k (a file or its bytes) as expert k's best of iteration 0, mark the
    experts trained and commit the state over `version`; the state as loaded back."""
    experts = list(state.experts)
    for k, checkpoint in enumerate(checkpoints):
        key = layout.best_checkpoint_key(run_name, k, 0)
        if isinstance(checkpoint, bytes):
            store.write_bytes(key, checkpoint)
        else:
            store.upload_file(key, checkpoint)
        experts[k] = experts[k].model_copy(
            update={"checkpoint": store.uri(key), "trained": True, "last_trained_pec_iter": 0}
        )
    new = state.model_copy(update={"experts": experts})
    save_state(store, new, expected_version=version, previous=state)
    loaded = load_state(store, run_name)
    assert loaded is not None
    return loaded[0]


TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "tiny.yaml"
# three designs inside configs/tiny.yaml's box, as a flow's `designs` parameter takes them
TINY_DESIGNS = [
    {"id": 0, "GCR": 0.78, "spcf": 0.002},
    {"id": 1, "GCR": 0.82, "spcf": 0.005},
    {"id": 2, "GCR": 0.88, "spcf": 0.009},
]


def finished_tiny_run(location: str, run_name: str) -> Store:
    """configs/tiny.yaml run for one PEC iteration on real MuJoCo, in this process, as
    `pec run` does it; its store."""
    store, spec = open_run_store(location)
    config = load_config(TINY_CONFIG, {"max_pec_iterations": 1})
    run_until_done(
        make_run(store, spec, run_name, config),
        LocalJobRunner(InProcessExecutor()),
        plot=render_all_soft,
    )
    return store
