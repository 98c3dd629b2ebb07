"""Graceful stop: SIGTERM (what a cancelled or preempted container gets) keeps the progress.

The job process turns SIGTERM into an exception; the MuJoCo trainer then writes
model_last.pt at the last finished PPO iteration, the job uploads it and leaves a resume
marker, and the next attempt of the same (expert, iteration) continues from it instead of
starting over. A SIGKILLed attempt leaves no marker (see test_kill_resume.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from support.job_doubles import write_samples

from pec.backends.base import TrainRequest
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.backend import LAST_NAME, load_checkpoint
from pec.errors import JobError
from pec.jobs.executors import SubprocessExecutor
from pec.jobs.run import RESUME_MARKER_NAME, run_train_job
from pec.jobs.spec import EXIT_INCOMPLETE, TrainJobSpec
from pec.runs import layout
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
RUN, EXPERT, ITERATION = "stop", 0, 0
GRACE_S = SubprocessExecutor().grace_s  # what an executor waits between SIGTERM and SIGKILL
TOTAL = 600  # far more than can finish between the first progress line and SIGTERM, even on a busy machine
SETTINGS: dict[str, object] = {
    "task": {"episode_steps": 40},
    "ppo": {
        "num_steps_per_env": 8,
        "num_mini_batches": 1,
        "num_learning_epochs": 1,
        "actor_hidden_dims": [16, 16],
        "critic_hidden_dims": [16, 16],
    },
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def marker_key() -> str:
    return layout.checkpoint_dir(RUN, EXPERT, ITERATION) + RESUME_MARKER_NAME


def make_spec(store: LocalStore) -> TrainJobSpec:
    keys = layout.samples_keys(RUN, EXPERT, ITERATION)
    write_samples(store, keys, num_envs=4, seed=5)
    return TrainJobSpec(
        backend="mujoco",
        store={"location": str(store.root)},  # type: ignore[arg-type]
        run_name=RUN,
        expert_id=EXPERT,
        iteration=ITERATION,
        samples_gcr_key=keys[0],
        samples_spcf_key=keys[1],
        start_level=0,
        max_iterations=TOTAL,
        num_envs=4,
        seed=13,
        settings=SETTINGS,
        timeout_s=600.0,
    )


def test_sigterm_writes_a_checkpoint_in_the_grace_period_and_the_retry_continues_from_it(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    spec = make_spec(store)
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(spec.model_dump_json())
    result_path = tmp_path / "result.json"
    job = subprocess.Popen(
        [sys.executable, "-m", "pec.jobs", str(spec_path), "--result", str(result_path)],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert job.stdout is not None
    seen: list[str] = []
    for line in job.stdout:  # the job reports PPO iterations as they finish
        seen.append(line)
        if f"/{TOTAL} " in line and "progress" in line:
            break
    assert any(f"/{TOTAL} " in line for line in seen), "".join(seen)[-2000:]
    sent = time.monotonic()
    job.send_signal(signal.SIGTERM)
    rest = job.stdout.read()
    code = job.wait(timeout=GRACE_S)
    stopped_after = time.monotonic() - sent
    assert stopped_after < GRACE_S

    last_key = layout.last_checkpoint_key(RUN, EXPERT, ITERATION)
    assert store.exists(last_key), rest[-2000:]
    done = int(load_checkpoint(Path(store.uri(last_key)))["iter"])
    assert 1 <= done < TOTAL
    marker = json.loads(store.read_bytes(marker_key()))
    assert marker == {
        "checkpoint": LAST_NAME,
        "completed_iterations": done,
        "total_iterations": TOTAL,
    }
    # an unfinished training is not a result: the job fails as incomplete (issue 13: the
    # crash rule is the driver's last resort once retries are exhausted)
    assert code == EXIT_INCOMPLETE, rest[-2000:]
    assert not result_path.exists()
    assert f"stopped after {done} of {TOTAL} PPO iterations" in rest, rest[-2000:]
    assert "SIGTERM" in rest

    # The next attempt of the same job warm-starts from that model_last.pt.
    progress: list[int] = []
    result = run_train_job(spec, on_progress=lambda it, total, m: progress.append(it))
    assert progress == list(range(done + 1, TOTAL + 1))
    final = load_checkpoint(Path(result.last_checkpoint_uri or ""))
    assert final["iter"] == TOTAL
    assert not store.exists(marker_key())  # finished: nothing left to continue


def test_trainer_saves_model_last_when_interrupted_and_not_when_diverged(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    request = TrainRequest(
        gcr=rng.uniform(0.8, 0.84, 4),
        spcf=rng.uniform(0.004, 0.006, 4),
        start_level=0,
        max_iterations=10,
        seed=2,
        device="cpu",
        work_dir=tmp_path / "a",
        settings=SETTINGS,
    )
    written: list[Path] = []

    def stop_at_two(it: int, total: int, metrics: dict[str, float]) -> None:
        if it == 2:
            raise KeyboardInterrupt("stand-in for the job's SIGTERM exception")

    with pytest.raises(KeyboardInterrupt):
        MujocoBackend().train(request, on_progress=stop_at_two, on_checkpoint=written.append)
    last = tmp_path / "a" / LAST_NAME
    assert last in written
    assert load_checkpoint(last)["iter"] == 2

    def diverge(it: int, total: int, metrics: dict[str, float]) -> None:
        raise JobError("training diverged (stand-in)")

    diverged = TrainRequest(**{**request.__dict__, "work_dir": tmp_path / "b"})
    with pytest.raises(JobError):
        MujocoBackend().train(diverged, on_progress=diverge)
    assert not (tmp_path / "b" / LAST_NAME).exists()  # max_iterations 10 never reached


def test_a_marker_without_its_checkpoint_is_ignored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    spec = make_spec(store).model_copy(update={"max_iterations": 2})
    store.write_bytes(
        marker_key(),
        json.dumps(
            {"checkpoint": LAST_NAME, "completed_iterations": 1, "total_iterations": 2}
        ).encode(),
    )
    progress: list[int] = []
    run_train_job(spec, on_progress=lambda it, total, m: progress.append(it))
    assert progress == [1, 2]  # started over: no model_last.pt to continue from
    assert not store.exists(marker_key())
