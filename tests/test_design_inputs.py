"""Design inputs read through one fixed box normalisation, not each policy's own data.

Real MuJoCo training (tiny budgets) on a narrow corner of the box: with
`ppo.design_inputs: fixed` the checkpoint's normalisers hold the design columns at mean 0 /
std 1, so a design at the far corner reaches the network inside [-1, 1]; with `running`
(rsl-rl's, the default) it arrives many standard deviations out. Checkpoints written the old way keep
loading, and a warm start continues them the way they were trained.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from pec.backends.ballu.design_inputs import design_columns, design_inputs_pinned
from pec.backends.ballu.facts import OBSERVATION_LAYOUT
from pec.backends.base import EvalRequest, TrainRequest
from pec.backends.mujoco.backend import MujocoBackend, load_checkpoint, parse_settings
from pec.backends.mujoco.env import BalluVecEnv

CORNER_GCR = np.array([0.765, 0.77, 0.775, 0.772])
CORNER_SPCF = np.array([0.0018, 0.002, 0.0022, 0.0021])
FAR = (0.87, 0.009)  # the opposite corner of the box
TINY = {
    "task": {"episode_steps": 30},
    "ppo": {
        "num_steps_per_env": 8,
        "num_mini_batches": 1,
        "num_learning_epochs": 1,
        "actor_hidden_dims": [16, 16],
        "critic_hidden_dims": [16, 16],
    },
}


def settings(design_inputs: str | None) -> dict[str, object]:
    ppo = dict(TINY["ppo"])
    if design_inputs is not None:
        ppo["design_inputs"] = design_inputs
    return {"task": TINY["task"], "ppo": ppo}


def train(work: Path, design_inputs: str | None, resume: Path | None = None) -> Path:
    torch.set_num_threads(1)
    outcome = MujocoBackend().train(
        TrainRequest(
            gcr=CORNER_GCR,
            spcf=CORNER_SPCF,
            start_level=0,
            max_iterations=3,
            seed=4,
            device="cpu",
            work_dir=work,
            resume_checkpoint=resume,
            settings=settings(design_inputs),
        )
    )
    return outcome.last_checkpoint


def far_corner_inputs(checkpoint: Path) -> torch.Tensor:
    """What the actor's network receives for the design columns at the far corner."""
    env = BalluVecEnv(
        1,
        parse_settings(TINY).task,
        gcr_values=np.array([FAR[0]]),
        spcf_values=np.array([FAR[1]]),
    )
    raw = env.get_observations()["policy"][0, design_columns()]
    actor = load_checkpoint(checkpoint)["actor_state_dict"]
    mean = actor["obs_normalizer._mean"][0, design_columns()]
    std = actor["obs_normalizer._std"][0, design_columns()]
    return (raw - mean) / (std + 0.01)  # rsl-rl's EmpiricalNormalization.forward


def test_design_columns_are_the_box_normalised_designs() -> None:
    columns = design_columns()
    assert len(columns) == dict(OBSERVATION_LAYOUT)["morphology"]
    task = parse_settings({}).task
    env = BalluVecEnv(
        3, task, gcr_values=np.array([0.75, 0.82, 0.89]), spcf_values=np.full(3, 0.01)
    )
    obs = env.get_observations()["policy"][:, columns].numpy()
    lo, hi = task.gcr_norm_range
    np.testing.assert_allclose(obs[:, 0], (np.array([0.75, 0.82, 0.89]) - lo) / (hi - lo) * 2 - 1)


def test_fixed_design_inputs_reach_the_network_inside_the_box(tmp_path: Path) -> None:
    fixed = train(tmp_path / "fixed", "fixed")
    state = load_checkpoint(fixed)
    assert state["infos"]["settings"]["ppo"]["design_inputs"] == "fixed"
    for model in ("actor_state_dict", "critic_state_dict"):
        assert design_inputs_pinned(state[model])
        # the other columns still follow the data
        assert float(state[model]["obs_normalizer._std"][0, 0]) != 1.0
    assert torch.all(far_corner_inputs(fixed).abs() <= 1.0)

    running = train(tmp_path / "running", None)  # the default
    assert load_checkpoint(running)["infos"]["settings"]["ppo"]["design_inputs"] == "running"
    assert not design_inputs_pinned(load_checkpoint(running)["actor_state_dict"])
    assert torch.all(far_corner_inputs(running).abs() > 5.0)  # the off-corner collapse's cause


def test_old_checkpoints_keep_loading_and_continue_as_trained(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = train(tmp_path / "old", "running")  # what every checkpoint before the fix is
    levels = MujocoBackend().evaluate(
        EvalRequest(
            checkpoint=old,
            gcr=np.array([FAR[0]]),
            spcf=np.array([FAR[1]]),
            num_episodes=1,
            start_difficulty=0,
            seed=0,
            device="cpu",
            settings=settings(None),
        )
    )
    assert len(levels) == 1
    with caplog.at_level(logging.WARNING):
        resumed = train(tmp_path / "resumed", "fixed", resume=old)
    assert "continuing it with ppo.design_inputs: running" in caplog.text
    state = load_checkpoint(resumed)
    assert state["infos"]["settings"]["ppo"]["design_inputs"] == "running"
    assert not design_inputs_pinned(state["actor_state_dict"])
    # a fixed checkpoint warm-starts fixed
    fixed = train(tmp_path / "fixed", "fixed")
    again = load_checkpoint(train(tmp_path / "again", "fixed", resume=fixed))
    assert design_inputs_pinned(again["actor_state_dict"])
    assert again["infos"]["settings"]["ppo"]["design_inputs"] == "fixed"
