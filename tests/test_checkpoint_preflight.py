"""Expert checkpoints are read weights-only before anything is written; library messages stay on one line.

Starts from a real run after one tiny MuJoCo iteration, replaces expert 1's checkpoint by a
torch archive whose pickle names ``os.system``, and runs every command that loads expert
checkpoints: each must exit 2 with one line naming the expert, the file and the fix, and
leave every byte of the store as it was. Then the job path that meets such a file without
the preflight: its error, as a job result and in the log, is one line.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from pec.errors import MESSAGE_LIMIT, QUOTE_LIMIT, StateError, one_line, quoted
from pec.evaluation.designs_file import Design
from pec.evaluation.final_eval_driver import run_final_eval
from pec.iteration.driver import evaluate_frontier, run_iteration
from pec.iteration.run_setup import initialise_run
from pec.jobs.executors import InProcessExecutor
from pec.jobs.runner import LocalJobRunner
from pec.presentation.cli import main as cli_main
from pec.presentation.visualize import render_all_soft
from pec.runs.config import load_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import Run, make_run, open_run, write_effective_config
from pec.runs.state import PECState
from pec.runs.state_io import load_state
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
RUN = "ckpt"
BROKEN = f"{RUN}/checkpoints/expert_1/iter_0/model_best.pt"


class _Callable:
    """Pickles as a call of os.system: what a weights-only load must refuse to run."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        import os

        return (os.system, ("echo pwned",))


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ckpt-seed") / "store"
    root.mkdir()
    store = LocalStore(root)
    run = make_run(store, StoreSpec(location=str(root)), RUN, load_config(TINY))
    initialise_run(run)
    write_effective_config(run)
    run_iteration(run, LocalJobRunner(InProcessExecutor()), plot=render_all_soft)
    return root


@pytest.fixture
def broken(trained: Path, tmp_path: Path) -> Path:
    """A copy of the run whose expert 1 checkpoint names os.system (its URIs point at the copy)."""
    root = tmp_path / "store"
    shutil.copytree(trained, root)
    for path in root.rglob("*.json"):
        path.write_text(path.read_text().replace(str(trained), str(root)))
    torch.save({"actor_state_dict": {}, "infos": _Callable()}, root / BROKEN)
    return root


def _open(root: Path) -> tuple[Run, PECState]:
    run = open_run(RUN, str(root))
    found = load_state(run.store, RUN)
    assert found is not None
    return run, found[0]


def _designs_file(tmp_path: Path) -> Path:
    path = tmp_path / "designs.json"
    designs = [Design(id=i, GCR=0.78 + 0.02 * i, spcf=0.004) for i in range(3)]
    path.write_text(json.dumps([d.model_dump() for d in designs]))
    return path


COMMANDS = {
    "evaluate-frontier": ["evaluate-frontier"],
    "eval-final": ["eval-final", "--designs_file", "{designs}"],
    "export": ["export", "--out", "{out}"],
    "route": ["route", "--GCR", "0.8", "--spcf", "0.005"],
    "distill": ["distill", "--iterations", "1", "--num_envs", "4"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_unsafe_expert_checkpoint_before_writing(
    command: str, broken: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bundle"
    args = [a.format(designs=_designs_file(tmp_path), out=out) for a in COMMANDS[command]] + [
        "--run_name",
        RUN,
        "--store",
        str(broken),
    ]
    before = snapshot(broken)
    capsys.readouterr()
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("pec: error: expert 1's checkpoint ")
    assert str(broken / BROKEN) in line
    assert "weights-only load refuses it" in line
    assert "restore it from a previous iteration" in line
    assert snapshot(broken) == before
    assert not out.exists()


def test_the_final_eval_driver_refuses_too(broken: Path, tmp_path: Path) -> None:
    """The `pec-final-eval` flow calls this driver: the same refusal, nothing written."""
    run, state = _open(broken)
    before = snapshot(broken)
    with pytest.raises(StateError, match=r"expert 1's checkpoint .* weights-only load refuses"):
        run_final_eval(
            run,
            state,
            [Design(id=0, GCR=0.8, spcf=0.005)],
            "designs",
            LocalJobRunner(InProcessExecutor()),
            num_episodes=1,
            start_difficulty=0,
        )
    assert snapshot(broken) == before


def test_a_missing_checkpoint_is_still_only_not_evaluated(broken: Path) -> None:
    (broken / BROKEN).unlink()
    run, state = _open(broken)
    summary = run_final_eval(
        run,
        state,
        [Design(id=0, GCR=0.8, spcf=0.005)],
        "designs",
        LocalJobRunner(InProcessExecutor()),
        num_episodes=1,
        start_difficulty=0,
    )
    assert summary["expert_means"][1] is None and summary["expert_means"][0] is not None


def test_torch_messages_reach_job_results_and_logs_on_one_line(
    broken: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the preflight, the job meets torch's multi-line refusal: quoted on one line."""
    run, state = _open(broken)
    errors: list[str | None] = []
    with caplog.at_level(logging.WARNING, logger="pec"):
        scores = evaluate_frontier(
            run,
            state,
            LocalJobRunner(InProcessExecutor()),
            reuse=False,
            on_outcome=lambda outcome: errors.append(outcome.error),
        )
    assert scores["scores"][1] is None and scores["scores"][0] is not None
    error = next(e for e in errors if e is not None)
    assert "\n" not in error and len(error) <= MESSAGE_LIMIT
    assert "expert 1" in error and "Weights only load failed" in error
    warned = [r.getMessage() for r in caplog.records if "could not be evaluated" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0]


def test_one_line_collapses_and_caps() -> None:
    torch_like = "Weights only load failed.\n\nPlease file an issue\n" + "x" * 500
    flat = one_line(torch_like)
    assert "\n" not in flat and len(flat) == QUOTE_LIMIT and flat.endswith("...")
    assert flat.startswith("Weights only load failed. Please file an issue x")
    assert one_line("  short\ttext \n") == "short text"
    assert quoted(ValueError("a\nb")) == "ValueError: a b"
