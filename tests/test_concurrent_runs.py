"""Two runs of the same run name and iteration at once: one commits, the other fails loudly.

Two drivers with different lease owners (two flow runs) never both train: the iteration's
lease lets one through (test_duplicate_runs.py). Two loops in one process share an owner,
so both read the state at iteration 0 and do the whole iteration; a barrier in front of the
state write makes them commit at the same moment (no sleeps). The store's
conditional write (a file lock + content version locally, If-Match on S3) lets exactly one
win; the other gets ConflictError naming pec_state.json. The state is whole, the iteration
is counted once, and re-running the loser does not count it again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from prefect.client.schemas.objects import State

import pec.iteration.driver as driver_module
import pec.iteration.refit as refit_module
from flows.pec_flow import pec_flow
from pec.errors import ConflictError
from pec.iteration.driver import run_iteration, run_until_done
from pec.iteration.run_setup import initialise_run
from pec.jobs.executors import InProcessExecutor
from pec.jobs.runner import LocalJobRunner
from pec.presentation.visualize import render_all_soft
from pec.runs import state_io
from pec.runs.config import load_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import Run, make_run
from pec.runs.state import PECState
from pec.runs.state_io import load_state
from pec.runs.store import LocalStore, S3Store, Store

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
RUN = "twice"


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def commit_together(monkeypatch: pytest.MonkeyPatch, parties: int) -> list[int]:
    """Hold every refit's state write until `parties` of them are ready; count the writes."""
    barrier = threading.Barrier(parties, timeout=120)
    real = state_io.save_state
    calls: list[int] = []

    def together(store: Store, state: PECState, expected_version: str | None, **kw: Any) -> str:
        if expected_version is not None:  # the refit's write, not init's
            calls.append(state.iteration)
            barrier.wait()
        return real(store, state, expected_version, **kw)

    monkeypatch.setattr(refit_module, "save_state", together)
    return calls


def run_in_threads(targets: list[Callable[[], Any]]) -> list[BaseException | Any]:
    outcomes: list[BaseException | Any] = [None] * len(targets)

    def call(i: int) -> None:
        try:
            outcomes[i] = targets[i]()
        except BaseException as exc:  # collected for the assertions
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return outcomes


def assert_counted_once(store: Store, iteration: int) -> PECState:
    loaded = load_state(store, RUN)
    assert loaded is not None
    state = loaded[0]
    assert state.iteration == iteration
    assert [h.iteration for h in state.history] == list(range(iteration))
    assert [c.iteration for c in state.coverage] == list(range(iteration))
    return state


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_two_loops_same_iteration_one_commits_one_conflicts(
    kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    store: LocalStore | S3Store = request.getfixturevalue(f"{kind}_store")
    if isinstance(store, S3Store):
        spec = StoreSpec(
            location=store.root_uri,
            endpoint_url=store.settings.endpoint_url,
            region=store.settings.region,
        )
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", store.settings.access_key_id or "")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", store.settings.secret_access_key or "")
    else:
        spec = StoreSpec(location=store.root_uri)
    run = make_run(store, spec, RUN, load_config(TINY))
    initialise_run(run)
    calls = commit_together(monkeypatch, 2)
    executor = LocalJobRunner(InProcessExecutor())

    outcomes = run_in_threads([lambda: run_iteration(run, executor, plot=render_all_soft)] * 2)

    assert calls == [1, 1]  # both reached the commit of iteration 0 (state -> iteration 1)
    conflicts = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(conflicts) == 1, outcomes
    assert "pec_state.json" in str(conflicts[0]) and "reload and retry" in str(conflicts[0])
    assert sum(1 for o in outcomes if not isinstance(o, BaseException)) == 1
    assert_counted_once(store, 1)

    monkeypatch.undo()
    # the loser, re-run, continues from the committed state instead of redoing iteration 0
    final = run_until_done(run, executor, plot=render_all_soft)
    assert final.iteration == 2
    assert_counted_once(store, 2)


@pytest.mark.usefixtures("prefect_harness")
def test_two_flow_runs_same_iteration_only_one_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two flow runs (two lease owners) at once: the iteration's lease lets one train; the
    other exits cleanly naming it (or, arriving later, finds the iteration done)."""
    store = str(tmp_path / "store")
    initialise_run(
        make_run(LocalStore(Path(store)), StoreSpec(location=store), RUN, load_config(TINY))
    )
    prepared: list[int] = []
    real_prepare = driver_module.prepare_training

    def counting(run: Run, state: PECState, expert_id: int, *budget: Any) -> Any:
        prepared.append(expert_id)
        return real_prepare(run, state, expert_id, *budget)

    monkeypatch.setattr(driver_module, "prepare_training", counting)

    def one() -> State[Any]:
        return pec_flow(
            run_name=RUN, store=store, config=TINY, iteration=0, chain=False, return_state=True
        )

    states = run_in_threads([one, one])

    assert all(isinstance(s, State) and s.is_completed() for s in states), states
    summaries = [s.result() for s in states if isinstance(s, State)]
    trained = [x for x in summaries if x["experts"]]
    skipped = [x for x in summaries if not x["experts"]]
    assert len(trained) == 1 and len(skipped) == 1, summaries
    assert sorted(prepared) == [0, 1]  # every expert trained exactly once
    if "duplicate_of" in skipped[0]:
        assert skipped[0]["duplicate_of"].startswith("flow run ")
    state = assert_counted_once(LocalStore(Path(store)), 1)

    # re-running that iteration finds it done and writes nothing
    again = pec_flow(run_name=RUN, store=store, config=TINY, iteration=0, chain=False)
    assert again["experts"] == {} and again["next_iteration"] == 1
    assert assert_counted_once(LocalStore(Path(store)), 1) == state
