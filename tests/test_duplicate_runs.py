"""A second driver of the same (run, iteration) — `pec run` or the `pec` flow — does not
train: it exits cleanly naming the lease's holder, waits for it (`duplicate_run: wait`), or
takes over the lease of a holder that crashed."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flows.pec_flow import pec_flow
from pec.presentation.cli import main
from pec.runs import layout
from pec.runs.state_io import load_state
from pec.runs.store import LocalStore
from pec.runs.store.lease import acquire, read_lease, release

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")


def trained_anything(root: Path, run: str) -> bool:
    return any((root / run).rglob("model_best.pt")) or any((root / run).rglob("*.npy"))


def run_cli(root: Path, run: str, *extra: str) -> int:
    argv = ["run", "--run_name", run, "--store", str(root), "--config", TINY]
    return main([*argv, "--set", "max_pec_iterations=1", *extra])


def test_pec_run_exits_cleanly_while_another_driver_holds_the_iteration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    holder = acquire(store, "dup", 0, "flow run pec-dup-it0 (1234)", ttl_s=300)
    assert run_cli(root, "dup") == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert "flow run pec-dup-it0 (1234)" in out and "not starting a second copy" in out
    assert not trained_anything(root, "dup")
    loaded = load_state(store, "dup")
    assert loaded is not None and loaded[0].iteration == 0
    # the holder's lease is untouched
    record = read_lease(store, "dup", 0)
    assert record is not None and record.token == holder.token and not record.released


def test_pec_run_takes_over_the_lease_of_a_crashed_holder(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    acquire(store, "crash", 0, "pec run (pid 99999 on gone)", ttl_s=2)  # never renewed
    time.sleep(2.2)
    assert run_cli(root, "crash") == 0
    loaded = load_state(store, "crash")
    assert loaded is not None and loaded[0].iteration == 1
    record = read_lease(store, "crash", 0)
    assert record is not None and record.released and record.holder.startswith("pec run (pid ")
    assert "99999" not in record.holder


def test_pec_run_waits_for_the_holder_when_configured(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    holder = acquire(store, "wait", 0, "flow run other", ttl_s=300)
    threading.Timer(2.0, release, args=(store, holder)).start()
    started = time.monotonic()
    assert run_cli(root, "wait", "--set", "duplicate_run=wait") == 0
    assert time.monotonic() - started >= 2.0
    loaded = load_state(store, "wait")
    assert loaded is not None and loaded[0].iteration == 1  # it ran the iteration itself


@pytest.mark.usefixtures("prefect_harness")
def test_flow_run_exits_cleanly_while_another_driver_holds_the_iteration(tmp_path: Path) -> None:
    root = tmp_path / "store"
    store = LocalStore(root)
    acquire(store, "dupflow", 0, "pec run (pid 4242 on box)", ttl_s=300)
    state = pec_flow(
        run_name="dupflow", store=str(root), config=TINY, chain=False, return_state=True
    )
    assert state.is_completed()
    summary = state.result()
    assert summary["duplicate_of"] == "pec run (pid 4242 on box)"
    assert summary["experts"] == {}
    assert not trained_anything(root, "dupflow")
    assert not (root / layout.scores_key("dupflow", 0)).exists()
