"""Two writers of pec_state.json at once: exactly one wins, the file is never torn."""

from __future__ import annotations

import json
import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_state import sheet_state

from pec.errors import ConflictError
from pec.runs.state import PECState, parse_state
from pec.runs.state_io import load_state, save_state
from pec.runs.store import LocalStore, S3Store, Store

ROUNDS = 12


def _race_worker(
    root: str, worker: int, jobs: Any, results: Any, barrier: Any, padding: int
) -> None:
    """Per round: receive the expected version, wait for the rival, write, report."""
    store = LocalStore(Path(root))
    while True:
        job = jobs.get()
        if job is None:
            return
        round_, version = job
        payload = json.dumps({"round": round_, "writer": worker, "pad": "x" * padding}).encode()
        barrier.wait()
        try:
            store.write_conditional("run/pec_state.json", payload, version)
            results.put((round_, worker, "won"))
        except ConflictError as exc:
            results.put((round_, worker, f"conflict:{exc}"))


def test_two_processes_race_write_conditional(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    store = LocalStore(tmp_path)
    jobs = [ctx.Queue(), ctx.Queue()]
    results = ctx.Queue()
    barrier = ctx.Barrier(2)
    workers = [
        ctx.Process(
            target=_race_worker,
            args=(str(tmp_path), i, jobs[i], results, barrier, 300_000),
            daemon=True,
        )
        for i in range(2)
    ]
    for w in workers:
        w.start()
    try:
        expected: str | None = None
        for round_ in range(ROUNDS):
            if round_ > 0:  # odd rounds race on creation, even on an update
                base = json.dumps({"round": round_, "writer": "base"}).encode()
                current = store.read_versioned("run/pec_state.json")
                assert current is not None
                if round_ % 2:
                    store.delete("run/pec_state.json")
                    expected = None
                else:
                    expected = store.write_conditional("run/pec_state.json", base, current[1])
            for q in jobs:
                q.put((round_, expected))
            outcome = sorted((results.get(timeout=60) for _ in range(2)), key=lambda r: r[1])
            assert all(r[0] == round_ for r in outcome)
            won = [r[1] for r in outcome if r[2] == "won"]
            lost = [r for r in outcome if r[2] != "won"]
            assert len(won) == 1, outcome
            assert len(lost) == 1 and "reload and retry" in lost[0][2]
            final = json.loads(store.read_bytes("run/pec_state.json"))  # never torn
            assert final["round"] == round_ and final["writer"] == won[0]
            assert len(final["pad"]) == 300_000
    finally:
        for q in jobs:
            q.put(None)
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    assert all(w.exitcode == 0 for w in workers)


def _grow(state: PECState, tag: int) -> PECState:
    new = state.model_copy(deep=True)
    new.experts[0].designs.append([0.75 + 0.01 * tag, 0.005])
    return new


def _save_race(store: Store) -> None:
    save_state(store, parse_state(json.dumps(sheet_state()).encode(), "t"), None, None)
    for _ in range(ROUNDS):
        loaded = load_state(store, "my_run")
        assert loaded is not None
        state, version = loaded

        def attempt(i: int, state: PECState = state, version: str = version) -> str:
            try:
                save_state(store, _grow(state, i), version, state)
                return "won"
            except ConflictError:
                return "conflict"

        with ThreadPoolExecutor(3) as pool:
            outcomes = list(pool.map(attempt, range(3)))
        assert sorted(outcomes) == ["conflict", "conflict", "won"]
        after = load_state(store, "my_run")
        assert after is not None
        assert len(after[0].experts[0].designs) == len(state.experts[0].designs) + 1


def test_save_state_race_local(local_store: LocalStore) -> None:
    _save_race(local_store)


@pytest.mark.s3
def test_save_state_race_s3(s3_store: S3Store) -> None:
    _save_race(s3_store)
