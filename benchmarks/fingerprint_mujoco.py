"""A fingerprint of the MuJoCo backend's 2-D behaviour, to compare two versions of pec.

Prints sha256 hashes of (1) the built robots' masses and inertias and 200 control steps of
observations, rewards, dones and joint states of a 16-env obstacle scene with random
designs, seeded actions, short episodes, the level rule and replay episodes, and (2) the
actor weights after a 3-iteration training, plus the evaluated levels. Run it on two
checkouts (e.g. main before and after a merge): equal hashes mean 2-D runs behave bit for
bit the same.

    PYTHONPATH=. .venv/bin/python benchmarks/fingerprint_mujoco.py
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
import torch

from pec.backends.base import EvalRequest, TrainRequest
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.env import BalluVecEnv
from pec.backends.mujoco.settings import BalluTaskSettings


def env_fingerprint() -> str:
    digest = hashlib.sha256()
    task = BalluTaskSettings.model_validate(
        {"episode_steps": 30, "curriculum_warmup_iterations": 0, "replay_probability": 0.3}
    )
    env = BalluVecEnv(16, task, gcr_range=(0.75, 0.89), spcf_range=(0.001, 0.01), seed=3)
    digest.update(env.sim.model.body_mass.tobytes())
    digest.update(env.sim.model.body_inertia.tobytes())
    gen = torch.Generator().manual_seed(5)
    for _ in range(200):
        obs, rew, done, _ = env.step(torch.rand(16, 2, generator=gen) * 1.4 - 0.2)
        for tensor in (obs["policy"], rew, done):
            digest.update(tensor.numpy().tobytes())
        digest.update(env.sim.data.qpos.tobytes())
    return digest.hexdigest()


def training_fingerprint() -> tuple[str, list[int]]:
    settings: dict[str, object] = {
        "task": {"episode_steps": 20},
        "ppo": {"actor_hidden_dims": [8], "critic_hidden_dims": [8], "num_steps_per_env": 4},
    }
    backend = MujocoBackend()
    with tempfile.TemporaryDirectory() as work:
        outcome = backend.train(
            TrainRequest(
                gcr=np.linspace(0.76, 0.88, 4),
                spcf=np.linspace(0.002, 0.009, 4),
                start_level=0,
                max_iterations=3,
                seed=1,
                device="cpu",
                work_dir=Path(work),
                settings=settings,
            )
        )
        state = torch.load(outcome.last_checkpoint, weights_only=True)
        digest = hashlib.sha256()
        for _, value in sorted(state["actor_state_dict"].items()):
            digest.update(value.numpy().tobytes())
        levels = backend.evaluate(
            EvalRequest(
                checkpoint=outcome.last_checkpoint,
                gcr=np.linspace(0.76, 0.88, 3),
                spcf=np.full(3, 0.005),
                num_episodes=2,
                start_difficulty=1,
                seed=0,
                device="cpu",
                settings=settings,
            )
        )
    return digest.hexdigest(), levels


def main() -> None:
    torch.set_num_threads(1)
    print(f"env steps    {env_fingerprint()}")
    weights, levels = training_fingerprint()
    print(f"trained      {weights}")
    print(f"eval levels  {levels}")


if __name__ == "__main__":
    main()
