"""Kill and resume: a run SIGKILLed anywhere and resumed ends exactly like an uninterrupted one.

The plain loop dies at 30 fault points (tests/support/kill_resume_driver.py forks one process per
attempt); the Prefect flow dies at three more, each resumed by a new flow run. The
comparison is exact: same pec_state.json (Gaussians, designs, history, coverage), same
checkpoints and samples byte for byte, and no checkpoint reference that does not resolve.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import get_current_settings
from support.kill_resume_driver import RUN, checkpoint_references, compare_runs

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
DRIVER = str(REPO / "tests" / "support" / "kill_resume_driver.py")

# Where a run can die: mid-training (after a PPO iteration, after a checkpoint upload),
# between a checkpoint and the state write, mid-evaluation, mid-refit, just before, during
# (temp file written, not yet renamed) and just after the state write. N counts passes.
LOOP_POINTS = [
    "train-progress:1",
    "train-progress:2",
    "train-progress:4",
    "train-progress:5",
    "train-progress:6",
    "train-progress:8",
    "checkpoint-uploaded:1",
    "checkpoint-uploaded:4",
    "checkpoint-uploaded:7",
    "train-result-recorded:1",
    "train-result-recorded:2",
    "train-result-recorded:3",
    "train-result-recorded:4",
    "eval-result-written:2",
    "eval-result-written:3",
    "scores-written:1",
    "scores-written:2",
    "refit-assignments-written:1",
    "refit-assignments-written:2",
    "state-before-write:1",
    "state-before-write:2",
    "state-before-write:3",
    "store-before-rename/pec_state.json:1",
    "store-before-rename/pec_state.json:2",
    "store-before-rename/pec_state.json:3",
    "state-written:1",
    "state-written:2",
    "state-written:3",
    # killed, then the resume killed again elsewhere, then resumed
    "train-progress:3+refit-assignments-written:1",
    "scores-written:1+store-before-rename/pec_state.json:1",
]


@pytest.fixture(scope="module")
def loop_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("kill-resume")
    report_path = work / "report.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PEC_FAULT_POINT", None)
    done = subprocess.run(
        [
            sys.executable,
            DRIVER,
            "loop",
            "--work",
            str(work),
            "--config",
            TINY,
            "--report",
            str(report_path),
            *LOOP_POINTS,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(report_path.read_text())
    report["work"] = str(work)
    return report


@pytest.mark.slow
def test_at_least_twenty_kill_points() -> None:
    assert len(LOOP_POINTS) >= 20


@pytest.mark.slow
@pytest.mark.parametrize("point", LOOP_POINTS)
def test_loop_killed_and_resumed_matches_uninterrupted_run(
    point: str, loop_report: dict[str, Any]
) -> None:
    entry = next(p for p in loop_report["points"] if p["point"] == point)
    assert entry["killed"], f"{point} was never reached: the run finished without dying"
    assert entry["resume_signal"] is None
    assert entry["problems"] == []


@pytest.mark.slow
def test_comparison_notices_a_changed_checkpoint_and_a_dangling_reference(
    loop_report: dict[str, Any], tmp_path: Path
) -> None:
    """The harness must be able to fail: tamper with a copy of a resumed run."""
    reference = Path(loop_report["work"]) / "reference"
    copy = tmp_path / "copy"
    shutil.copytree(reference, copy)
    for path in copy.rglob("*.json"):  # local URIs are absolute: point them at the copy
        path.write_text(path.read_text().replace(str(reference), str(copy)))
    assert compare_runs(reference, copy) == []
    best = copy / RUN / "checkpoints" / "expert_1" / "iter_1" / "model_best.pt"
    data = bytearray(best.read_bytes())
    data[-20] ^= 0xFF
    best.write_bytes(bytes(data))
    (copy / RUN / "checkpoints" / "expert_0" / "iter_1" / "model_last.pt").unlink()
    problems = compare_runs(reference, copy)
    assert any("expert_1/iter_1/model_best.pt differs" in p for p in problems)
    assert any("missing checkpoint" in p and "expert_0/iter_1/model_last.pt" in p for p in problems)


@pytest.mark.slow
def test_reference_run_references_only_its_own_checkpoints(loop_report: dict[str, Any]) -> None:
    reference = Path(loop_report["work"]) / "reference"
    uris = checkpoint_references(reference)
    # 2 experts x (best + last) + 2 history snapshots x 2 experts + 4 result files x 2
    assert len(uris) == 4 + 4 + 8
    assert all(Path(u).is_file() and reference in Path(u).parents for u in uris)


# ---------------------------------------------------------------- through the Prefect flow

FLOW_POINTS = [
    "train-progress:3",  # expert 1 of iteration 0 mid-training; expert 0 comes back Cached
    "refit-assignments-written:2",  # iteration 1 mid-refit
    "state-written:2",  # iteration 0 committed, its flow run dies before plots/artifacts
]


@pytest.fixture(scope="module")
def flow_reference(loop_report: dict[str, Any]) -> Path:
    return Path(loop_report["work"]) / "reference"


def _flow(store: Path, fault: str | None, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    run_env = dict(env)
    run_env.pop("PEC_FAULT_POINT", None)
    if fault is not None:
        run_env["PEC_FAULT_POINT"] = fault
    return subprocess.run(
        [sys.executable, DRIVER, "flow", "--store", str(store), "--config", TINY],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("point", FLOW_POINTS)
def test_flow_killed_and_rerun_matches_uninterrupted_run(
    point: str, flow_reference: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PREFECT_API_URL": str(get_current_settings().api.url),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    store = tmp_path / "store"
    killed = _flow(store, point, env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = _flow(store, None, env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # The flow and the plain loop are the same iteration: the loop's reference applies.
    assert compare_runs(flow_reference, store) == []
