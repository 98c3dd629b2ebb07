"""Two `pec refit` commands racing on one run: the store keeps exactly the winner's solo result.

Each race starts two real processes (forked from this one, released together) running
`pec refit` with different scores files on a fresh run. One must win (exit 0) and one lose
(exit 2, one line); the run's scores.json, assignments.json and pec_state.json must be byte
for byte what a solo refit with the winner's scores writes. Repeated 20 times.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pec.presentation.cli import main as cli_main
from pec.runs import layout

RUN = "race"
SCORES = {
    "a": [[3, 0, 5, 0, 1, 0], [2, 4, 5, 0, 0, 0], [0, 0, 1, 7, 0, 0]],
    "b": [[0, 6, 0, 2, 0, 4], [5, 0, 0, 3, 6, 0], [1, 1, 7, 0, 0, 5]],
}
RACES = 20


def _fresh_run(root: Path) -> None:
    common = ["--run_name", RUN, "--store", str(root)]
    assert cli_main(["init", *common, "--K", "3", "--set", "F=6", "--set", "seed=4"]) == 0
    assert cli_main(["frontier", *common]) == 0


def _records(root: Path) -> dict[str, bytes]:
    keys = [
        layout.scores_key(RUN, 0),
        layout.assignments_key(RUN, 0),
        layout.state_key(RUN),
    ]
    return {key: (root / key).read_bytes() for key in keys}


def _refit_args(root: Path, scores: Path) -> list[str]:
    return ["refit", "--run_name", RUN, "--store", str(root), "--scores", str(scores)]


def _race(root: Path, files: dict[str, Path], logs: Path) -> dict[str, tuple[int, str]]:
    """Fork one `pec refit` per scores file, release them together; exit code and stderr."""
    go_read, go_write = os.pipe()
    pids: dict[str, int] = {}
    for name, scores in files.items():
        pid = os.fork()
        if pid == 0:  # child: wait for the start signal, then refit
            code = 1
            try:
                os.close(go_write)
                # the CLI writes to sys.stderr (pytest's capture, when it captures): a file
                sys.stderr = open(logs / f"{name}.err", "w")  # noqa: SIM115
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
                os.read(go_read, 1)
                code = cli_main(_refit_args(root, scores))
            finally:
                sys.stderr.flush()
                os._exit(code)
        pids[name] = pid
    os.close(go_read)
    os.write(go_write, b"go")
    os.close(go_write)
    outcome: dict[str, tuple[int, str]] = {}
    for name, pid in pids.items():
        _, status = os.waitpid(pid, 0)
        outcome[name] = (os.waitstatus_to_exitcode(status), (logs / f"{name}.err").read_text())
    return outcome


@pytest.fixture(scope="module")
def scores_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scores")
    files = {}
    for name, rows in SCORES.items():
        files[name] = folder / f"{name}.json"
        files[name].write_text(json.dumps(rows))
    return files


@pytest.fixture(scope="module")
def solo(
    tmp_path_factory: pytest.TempPathFactory, scores_files: dict[str, Path]
) -> dict[str, dict[str, bytes]]:
    """What a refit with each scores file writes when nobody races it."""
    results = {}
    for name, scores in scores_files.items():
        root = tmp_path_factory.mktemp(f"solo-{name}")
        _fresh_run(root)
        assert cli_main(_refit_args(root, scores)) == 0
        results[name] = _records(root)
    assert results["a"] != results["b"]
    return results


def test_racing_refits_leave_exactly_the_winners_solo_result(
    tmp_path: Path,
    scores_files: dict[str, Path],
    solo: dict[str, dict[str, bytes]],
) -> None:
    winners = []
    for index in range(RACES):
        root = tmp_path / f"race{index:02d}"
        logs = tmp_path / f"logs{index:02d}"
        logs.mkdir()
        _fresh_run(root)
        outcome = _race(root, scores_files, logs)
        codes = sorted(code for code, _ in outcome.values())
        assert codes == [0, 2], (index, outcome)
        winner = next(name for name, (code, _) in outcome.items() if code == 0)
        loser_err = next(err for code, err in outcome.values() if code == 2)
        assert len(loser_err.splitlines()) == 1 and loser_err.startswith("pec: error:"), loser_err
        assert _records(root) == solo[winner], f"race {index}: not {winner}'s solo result"
        winners.append(winner)
    print(f"winners over {RACES} races: a {winners.count('a')}, b {winners.count('b')}")
