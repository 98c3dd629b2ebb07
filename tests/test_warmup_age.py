"""Warm-ups count from the policy's age: a warm start goes on where its checkpoint left them.

Real MuJoCo training; the schedule each PPO iteration used is read from the real env the
backend built (`make_env` is the backend's own hook), and its effect on the level rule from
the training metrics.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from support.job_doubles import write_samples
from support.kill_resume_driver import RUN

from pec.backends.ballu import schedule
from pec.backends.ballu.settings import BalluTaskSettings
from pec.backends.base import TrainRequest
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.backend import LAST_NAME, load_checkpoint
from pec.jobs.run import run_train_job
from pec.jobs.spec import TrainJobSpec
from pec.runs import layout
from pec.runs.store import LocalStore

# One episode per PPO iteration (8 control steps, 8 steps per rollout): every iteration
# ends every episode, so the level rule acts once per iteration when it is on.
SETTINGS: dict[str, Any] = {
    "task": {
        "episode_steps": 8,
        "curriculum_warmup_iterations": 4,
        "goal_warmup_iterations": 3,
        "goal_ramp_iterations": 2,
        "replay_probability": 0.0,
    },
    "ppo": {
        "num_steps_per_env": 8,
        "num_mini_batches": 1,
        "num_learning_epochs": 1,
        "actor_hidden_dims": [16, 16],
        "critic_hidden_dims": [16, 16],
        "save_interval": 1,
    },
}


def _settings(clock: str) -> dict[str, Any]:
    settings = copy.deepcopy(SETTINGS)
    settings["task"]["warmup_clock"] = clock
    return settings


class WatchedBackend(MujocoBackend):
    """The MuJoCo backend, keeping the env it builds so a test can read its schedule."""

    def __init__(self) -> None:
        self.env: Any = None

    def make_env(self, *args: Any, **kwargs: Any) -> Any:
        self.env = super().make_env(*args, **kwargs)
        return self.env


def _train(
    backend: WatchedBackend,
    work: Path,
    iterations: int,
    clock: str,
    *,
    resume: Path | None = None,
    start_level: int = 0,
    continues_job: bool = False,
    stop_after: int | None = None,
) -> list[tuple[int, bool, float, float]]:
    """Per PPO iteration: (age reached, curriculum on, goal factor, mean level after it)."""
    seen: list[tuple[int, bool, float, float]] = []

    def watch(it: int, total: int, metrics: dict[str, float]) -> None:
        env = backend.env
        seen.append((it, env.curriculum_active, env.goal_factor, metrics["mean_level"]))
        if stop_after is not None and len(seen) == stop_after:
            raise KeyboardInterrupt("stand-in for the job's SIGTERM exception")

    rng = np.random.default_rng(0)
    request = TrainRequest(
        gcr=rng.uniform(0.80, 0.84, 4),
        spcf=rng.uniform(0.004, 0.006, 4),
        start_level=start_level,
        max_iterations=iterations,
        seed=5,
        device="cpu",
        work_dir=work,
        resume_checkpoint=resume,
        settings=_settings(clock),
        continues_job=continues_job,
    )
    backend.train(request, on_progress=watch)
    return seen


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_the_clock_reads_the_age_or_the_jobs_count() -> None:
    by_age = BalluTaskSettings()
    per_job = BalluTaskSettings(warmup_clock="job")
    assert by_age.warmup_clock == "policy_age"  # the default
    assert schedule.warmup_iteration(by_age, 130, 100) == 130
    assert schedule.warmup_iteration(per_job, 130, 100) == 30
    assert schedule.warmup_iteration(per_job, 100, 100) == 0
    with pytest.raises(ValueError, match="precedes"):
        schedule.warmup_iteration(by_age, 99, 100)


def test_a_policy_past_its_warmups_fine_tunes_with_them_over(tmp_path: Path) -> None:
    backend = WatchedBackend()
    fresh = _train(backend, tmp_path / "fresh", 5, "policy_age")
    # A fresh policy gets the warm-ups as before: the level rule from its iteration 4, the
    # goal reward 0 up to iteration 3, then ramping over 2 iterations.
    assert [s[1] for s in fresh] == [False, False, False, False, True]
    assert [s[2] for s in fresh] == [0.0, 0.0, 0.0, 0.0, 0.5]
    aged = tmp_path / "fresh" / LAST_NAME
    assert load_checkpoint(aged)["iter"] == 5

    # Warm-started at level 5: the level rule and the full goal reward from iteration one.
    resumed = _train(backend, tmp_path / "resumed", 3, "policy_age", resume=aged, start_level=5)
    assert [s[0] for s in resumed] == [6, 7, 8]
    assert all(s[1] for s in resumed)
    assert [s[2] for s in resumed] == [1.0, 1.0, 1.0]
    # Eight control steps move no robot past 0.5 m: every episode end demotes.
    assert resumed[0][3] == 4.0

    # The original scripts' per-job count, when asked for, repeats the warm-ups.
    per_job = _train(backend, tmp_path / "per-job", 3, "job", resume=aged, start_level=5)
    assert not any(s[1] for s in per_job)
    assert [s[2] for s in per_job] == [0.0, 0.0, 0.0]
    assert [s[3] for s in per_job] == [5.0, 5.0, 5.0]


def test_a_policy_inside_a_warmup_finishes_it_and_no_more(tmp_path: Path) -> None:
    backend = WatchedBackend()
    _train(backend, tmp_path / "young", 2, "policy_age")
    young = tmp_path / "young" / LAST_NAME
    resumed = _train(backend, tmp_path / "resumed", 5, "policy_age", resume=young)
    # Iterations 2..6 trained (ages 3..7 reached): the level rule waits 2 more iterations,
    # the goal reward 2 more (0 through iteration 3), then ramps over 2.
    assert [s[0] for s in resumed] == [3, 4, 5, 6, 7]
    assert [s[1] for s in resumed] == [False, False, True, True, True]
    assert [s[2] for s in resumed] == [0.0, 0.0, 0.5, 1.0, 1.0]
    per_job = _train(backend, tmp_path / "per-job", 5, "job", resume=young)
    assert [s[1] for s in per_job] == [False, False, False, False, True]
    assert [s[2] for s in per_job] == [0.0, 0.0, 0.0, 0.0, 0.5]


@pytest.mark.parametrize("clock", ["policy_age", "job"])
def test_a_job_stopped_inside_a_warmup_continues_its_schedule(tmp_path: Path, clock: str) -> None:
    """An interrupted attempt's continuation sees exactly the uninterrupted job's schedule."""
    backend = WatchedBackend()
    _train(backend, tmp_path / "young", 1, "policy_age")
    young = tmp_path / "young" / LAST_NAME
    whole = _train(backend, tmp_path / "whole", 5, clock, resume=young)
    stopped_work = tmp_path / "stopped"
    with pytest.raises(KeyboardInterrupt):
        _train(backend, stopped_work, 5, clock, resume=young, stop_after=2)
    stopped_at = load_checkpoint(stopped_work / LAST_NAME)
    assert stopped_at["iter"] == 3
    assert stopped_at["infos"]["job_start_iteration"] == 1
    rest = _train(
        backend,
        tmp_path / "rest",
        3,
        clock,
        resume=stopped_work / LAST_NAME,
        continues_job=True,
    )
    schedule_of = [(s[0], s[1], s[2]) for s in whole]
    assert schedule_of[:2] + [(s[0], s[1], s[2]) for s in rest] == schedule_of
    assert load_checkpoint(tmp_path / "rest" / LAST_NAME)["infos"]["job_start_iteration"] == 1


def test_a_retried_job_keeps_its_first_iteration_per_job(tmp_path: Path) -> None:
    """Through the job layer: the retry continuing model_last.pt is the same job, not a new one."""
    young_work = tmp_path / "young"
    _train(WatchedBackend(), young_work, 1, "policy_age")
    store = LocalStore(tmp_path / "store")
    keys = layout.samples_keys("warm", 0, 1)
    write_samples(store, keys, num_envs=4, seed=5)
    young_key = layout.last_checkpoint_key("warm", 0, 0)
    store.upload_file(young_key, young_work / LAST_NAME)
    spec = TrainJobSpec(
        backend="mujoco",
        store={"location": str(store.root)},  # type: ignore[arg-type]
        run_name="warm",
        expert_id=0,
        iteration=1,
        samples_gcr_key=keys[0],
        samples_spcf_key=keys[1],
        start_level=0,
        max_iterations=5,
        num_envs=4,
        seed=13,
        settings=_settings("job"),
        resume_checkpoint_uri=store.uri(young_key),
        timeout_s=600.0,
    )

    def stop(it: int, total: int, metrics: dict[str, float]) -> None:
        if it == 3:
            raise KeyboardInterrupt("stand-in for the job's SIGTERM exception")

    with pytest.raises(KeyboardInterrupt):
        run_train_job(spec, on_progress=stop)
    progress: list[int] = []
    result = run_train_job(spec, on_progress=lambda it, total, m: progress.append(it))
    assert progress == [4, 5, 6]  # the retry went on from model_last.pt at age 3
    final = load_checkpoint(Path(result.last_checkpoint_uri or ""))
    assert final["iter"] == 6
    assert final["infos"]["job_start_iteration"] == 1  # the job's start, not the retry's


# ---------------------------------------------------------------- kill and resume, whole run

REPO = Path(__file__).resolve().parents[1]
DRIVER = str(REPO / "tests" / "support" / "kill_resume_driver.py")
# configs/tiny.yaml trains 2 PPO iterations per job and iteration 1 warm-starts from each
# expert's model_best.pt, written at age 1 (the level stays 0, so only the first iteration
# improves it): iteration 1's fine-tunes train ages 1 and 2, where by age the goal reward
# starts its ramp (factor 0.5 at age 2) and the level rule turns on.
CROSSING = {
    "curriculum_warmup_iterations": 2,
    "goal_warmup_iterations": 1,
    "goal_ramp_iterations": 2,
}
# train-progress passes 5..8 are iteration 1's (2 experts x 2 PPO iterations in iteration 0)
MID_WARMUP_POINTS = ["train-progress:5", "train-progress:7", "checkpoint-uploaded:5"]


def _kill_resume(work: Path, clock: str, points: list[str]) -> dict[str, Any]:
    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config["backend_settings"]["task"].update({**CROSSING, "warmup_clock": clock})
    config_path = work / "config.yaml"
    work.mkdir(parents=True)
    config_path.write_text(yaml.safe_dump(config))
    report_path = work / "report.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PEC_FAULT_POINT", None)
    done = subprocess.run(
        [
            *(sys.executable, DRIVER, "loop", "--work", str(work)),
            *("--config", str(config_path), "--report", str(report_path), *points),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(report_path.read_text())
    return report


def _actor(work: Path, expert: int, iteration: int) -> dict[str, torch.Tensor]:
    path = work / "reference" / RUN / "checkpoints" / f"expert_{expert}" / f"iter_{iteration}"
    weights: dict[str, torch.Tensor] = load_checkpoint(path / LAST_NAME)["actor_state_dict"]
    return weights


@pytest.mark.slow
def test_a_run_killed_inside_a_warmup_resumes_bit_identical(tmp_path: Path) -> None:
    by_age = _kill_resume(tmp_path / "age", "policy_age", MID_WARMUP_POINTS)
    for entry in by_age["points"]:
        assert entry["killed"], f"{entry['point']} was never reached"
        assert entry["resume_signal"] is None
        assert entry["problems"] == [], entry["point"]
    per_job = _kill_resume(tmp_path / "job", "job", MID_WARMUP_POINTS[:1])
    assert per_job["points"][0]["killed"] and per_job["points"][0]["problems"] == []
    # The clock matters exactly where the schedules differ: iteration 0 trains ages 0-1 under
    # both, iteration 1's fine-tunes read ages 1-2 by age but 0-1 per job.
    for expert in (0, 1):
        same = _actor(tmp_path / "age", expert, 0), _actor(tmp_path / "job", expert, 0)
        for key in same[0]:
            torch.testing.assert_close(same[0][key], same[1][key], rtol=0, atol=0)
        fine = _actor(tmp_path / "age", expert, 1), _actor(tmp_path / "job", expert, 1)
        assert any(not torch.equal(fine[0][key], fine[1][key]) for key in fine[0])
