"""The device plumbing on a machine without CUDA: the spec's device reaches the runner and
the env, and `cuda` asked for where torch has none is one clear line before any work.

(On a CUDA machine the same tests check that `cuda:0` is accepted instead; the GPU timings
are benchmarks/bench_gpu.py's.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support.job_doubles import write_samples

from pec.backends.base import TrainRequest, check_device
from pec.backends.mujoco import MujocoBackend
from pec.errors import ConfigError
from pec.jobs.run import run_train_job
from pec.jobs.spec import EXIT_JOB_FAILED, TrainJobSpec
from pec.runs import layout
from pec.runs.store import LocalStore

REPO = Path(__file__).resolve().parents[1]
CUDA = torch.cuda.is_available()
SETTINGS: dict[str, object] = {
    "task": {"episode_steps": 10},
    "ppo": {
        "num_steps_per_env": 4,
        "num_mini_batches": 1,
        "num_learning_epochs": 1,
        "actor_hidden_dims": [8],
        "critic_hidden_dims": [8],
    },
}


def _spec(store: LocalStore, device: str) -> TrainJobSpec:
    keys = layout.samples_keys("dev", 0, 0)
    write_samples(store, keys, num_envs=4, seed=1)
    return TrainJobSpec(
        backend="mujoco",
        store={"location": str(store.root)},  # type: ignore[arg-type]
        run_name="dev",
        expert_id=0,
        iteration=0,
        samples_gcr_key=keys[0],
        samples_spcf_key=keys[1],
        start_level=0,
        max_iterations=1,
        num_envs=4,
        seed=2,
        device=device,
        settings=SETTINGS,
        timeout_s=300.0,
        threads=1,
    )


def test_check_device_names_the_device_and_the_fix() -> None:
    check_device("cpu")
    check_device("cpu:0")
    with pytest.raises(ConfigError, match=r"'gpu' is not a torch device; pass cpu, cuda"):
        check_device("gpu")
    if CUDA:  # pragma: no cover - a GPU host accepts it
        check_device("cuda:0")
        return
    with pytest.raises(ConfigError, match=r"'cuda:0' needs CUDA.*pass --set device=cpu") as info:
        check_device("cuda:0")
    assert "\n" not in str(info.value)


def test_the_specs_device_reaches_the_runner_and_the_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-default device string (`cpu:0`) goes spec -> TrainRequest -> env and runner."""
    seen: dict[str, Any] = {}
    real_make_env, real_build = MujocoBackend.make_env, MujocoBackend.build_trainer

    def make_env(self: MujocoBackend, *args: Any) -> Any:
        env = real_make_env(self, *args)
        seen["env"] = env.device
        return env

    def build_trainer(self: MujocoBackend, request: TrainRequest) -> Any:
        seen["request"] = request.device
        trainer = real_build(self, request)
        seen["runner"] = trainer.runner.device
        seen["policy"] = {p.device.type for p in trainer.runner.alg.get_policy().parameters()}
        return trainer

    monkeypatch.setattr(MujocoBackend, "make_env", make_env)
    monkeypatch.setattr(MujocoBackend, "build_trainer", build_trainer)
    store = LocalStore(tmp_path / "store")
    result = run_train_job(_spec(store, "cpu:0"))
    assert seen == {"request": "cpu:0", "env": "cpu:0", "runner": "cpu:0", "policy": {"cpu"}}
    assert store.exists(layout.best_checkpoint_key("dev", 0, 0))
    assert result.metrics["iterations"] == 1.0


def test_cuda_on_a_machine_without_it_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    if CUDA:  # pragma: no cover - on a GPU host cuda:0 is valid; bench_gpu.py runs it
        return
    with pytest.raises(ConfigError, match=r"'cuda:0' needs CUDA"):
        MujocoBackend().train(
            TrainRequest(
                gcr=np.array([0.8, 0.8]),
                spcf=np.array([0.005, 0.005]),
                start_level=0,
                max_iterations=1,
                seed=0,
                device="cuda:0",
                work_dir=tmp_path / "work",
                settings=SETTINGS,
            )
        )
    assert not (tmp_path / "work").exists()
    # the same through the job process: exit 1, one line naming the device, no traceback
    store = LocalStore(tmp_path / "store")
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(_spec(store, "cuda").model_dump_json())
    done = subprocess.run(
        [sys.executable, "-m", "pec.jobs", str(spec_path)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == EXIT_JOB_FAILED
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'cuda' needs CUDA" in lines[0] and "device=cpu" in lines[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert not store.exists(layout.best_checkpoint_key("dev", 0, 0))


def test_bench_gpu_refuses_in_one_line_without_cuda() -> None:
    if CUDA:  # pragma: no cover - on a GPU host the benchmark runs (minutes)
        return
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_gpu.py"), "--envs", "64"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_gpu: CUDA is not available here")
