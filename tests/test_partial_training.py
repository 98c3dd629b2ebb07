"""A training killed before its PPO iterations are done is not a finished expert (issue 13).

Its job fails, the retry continues from the model_last.pt the killed attempt left, and only
when retries are exhausted does the crash rule keep its best checkpoint, which the state,
`pec status` and the flow's artifacts then call "partial: k of N iterations". The kills are
real SIGKILLs of the job process (pec.faults) at several PPO iterations, through `pec run`
and through the `pec` flow (subprocess executor, so the job dies and the driver lives).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
from prefect.artifacts import Artifact

from flows.artifacts import artifact_key
from flows.pec_flow import pec_flow
from pec.presentation.cli import main
from pec.runs import layout
from pec.runs.state_io import load_state
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
TOTAL = 4  # PPO iterations of iteration 0's training
pytestmark = pytest.mark.slow


def backend_settings_with_save_interval() -> dict[str, Any]:
    import yaml

    data = yaml.safe_load(Path(TINY).read_text())
    settings = dict(data["backend_settings"])
    settings["ppo"] = {**settings["ppo"], "save_interval": 1}
    return settings


def overrides(retries: list[float]) -> list[str]:
    settings = json.dumps(backend_settings_with_save_interval())
    return [
        "--set",
        "executor=subprocess",
        "--set",
        f"max_iterations_iter0={TOTAL}",
        "--set",
        "max_pec_iterations=1",
        "--set",
        f"backend_settings={settings}",
        "--set",
        f"job_retry_delays_s={json.dumps(retries)}",
    ]


def train_result(root: Path, run: str, expert: int) -> dict[str, Any]:
    return dict(json.loads((root / layout.train_result_key(run, expert, 0)).read_text()))


def kill_job_at(monkeypatch: pytest.MonkeyPatch, iteration: int, once: Path | None) -> None:
    monkeypatch.setenv("PEC_FAULT_POINT", f"train-progress:{iteration}")
    if once is not None:
        monkeypatch.setenv("PEC_FAULT_ONCE_FILE", str(once))
    else:
        monkeypatch.delenv("PEC_FAULT_ONCE_FILE", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


@pytest.mark.parametrize("killed_at", [1, 3])
def test_pec_run_retry_continues_a_killed_training_from_model_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_at: int
) -> None:
    root = tmp_path / "store"
    kill_job_at(monkeypatch, killed_at, once=tmp_path / "fired")
    argv = ["run", "--run_name", "cont", "--store", str(root), "--config", TINY]
    assert main([*argv, *overrides([0.0])]) == 0
    assert (tmp_path / "fired").exists()  # the first job really was killed
    loaded = load_state(LocalStore(root), "cont")
    assert loaded is not None
    state = loaded[0]
    assert state.iteration == 1
    assert all(not e.failures for e in state.experts)  # finished: nothing partial
    killed, untouched = train_result(root, "cont", 0), train_result(root, "cont", 1)
    # both reach PPO iteration TOTAL; the killed one only ran the iterations it had left
    assert killed["metrics"]["iterations"] == untouched["metrics"]["iterations"] == TOTAL
    steps_per_iteration = untouched["metrics"]["env_steps"] / TOTAL
    assert killed["metrics"]["env_steps"] == (TOTAL - killed_at) * steps_per_iteration
    assert not (root / layout.checkpoint_dir("cont", 0, 0) / "resume.json").exists()


@pytest.mark.parametrize("killed_at", [1, 2, 3])
def test_pec_run_keeps_a_partial_expert_only_when_retries_are_exhausted(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    killed_at: int,
) -> None:
    root = tmp_path / "store"
    kill_job_at(monkeypatch, killed_at, once=None)  # every first attempt dies; no retries
    argv = ["--run_name", "part", "--store", str(root)]
    assert main(["run", *argv, "--config", TINY, *overrides([])]) == 0
    loaded = load_state(LocalStore(root), "part")
    assert loaded is not None
    state = loaded[0]
    assert state.iteration == 1
    for expert in state.experts:
        assert expert.checkpoint == str(root / layout.best_checkpoint_key("part", expert.id, 0))
        assert len(expert.failures) == 1
        assert expert.failures[0].message.startswith(f"partial: {killed_at} of {TOTAL} iterations")
    monkeypatch.delenv("PEC_FAULT_POINT")
    capsys.readouterr()
    assert main(["status", *argv]) == 0
    assert f"partial: {killed_at} of {TOTAL}" in capsys.readouterr().out


@pytest.mark.usefixtures("prefect_harness")
def test_flow_task_retry_continues_and_only_then_the_crash_rule_says_partial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = backend_settings_with_save_interval()
    common: dict[str, Any] = {
        "executor": "subprocess",
        "max_iterations_iter0": TOTAL,
        "max_pec_iterations": 1,
        "backend_settings": settings,
    }
    # one retry: the killed training continues and finishes
    root = tmp_path / "retried"
    kill_job_at(monkeypatch, 2, once=tmp_path / "fired")
    state = pec_flow(
        run_name="flowcont",
        store=str(root),
        config=TINY,
        overrides={**common, "job_retry_delays_s": [0.0]},
        chain=False,
        return_state=True,
    )
    assert state.is_completed()
    assert (tmp_path / "fired").exists()
    assert state.result()["experts"] == {"0": "trained", "1": "trained"}
    killed = train_result(root, "flowcont", 0)
    assert killed["metrics"]["iterations"] == TOTAL
    assert (
        killed["metrics"]["env_steps"] < train_result(root, "flowcont", 1)["metrics"]["env_steps"]
    )

    # no retries left: the crash rule keeps the best checkpoint and says it is partial
    root = tmp_path / "exhausted"
    kill_job_at(monkeypatch, 2, once=None)
    state = pec_flow(
        run_name="flowpart",
        store=str(root),
        config=TINY,
        overrides={**common, "job_retry_delays_s": []},
        chain=False,
        return_state=True,
    )
    assert state.is_completed()
    label = f"partial: 2 of {TOTAL} iterations"
    assert state.result()["experts"] == {"0": label, "1": label}
    loaded = load_state(LocalStore(root), "flowpart")
    assert loaded is not None and loaded[0].iteration == 1
    assert all(e.failures[0].message.startswith(label) for e in loaded[0].experts)
    table = cast(Artifact, Artifact.get(artifact_key("flowpart", "experts")))
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [row["status"] for row in rows] == [label, label]
