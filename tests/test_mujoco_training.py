"""MujocoBackend: PPO really improves, checkpoints are safe to load, warm starts resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pec.backends.base import Backend, EvalRequest, ProbeRequest, TrainRequest
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.backend import BEST_NAME, LAST_NAME, load_checkpoint
from pec.errors import ConfigError, InputError

# Short episodes so a few dozen iterations see many of them; no warm-ups.
FAST: dict[str, object] = {
    "task": {
        "episode_steps": 100,
        "curriculum_warmup_iterations": 0,
        "goal_warmup_iterations": 0,
        "goal_ramp_iterations": 0,
    },
    "ppo": {
        "actor_hidden_dims": [32, 32],
        "critic_hidden_dims": [32, 32],
        "save_interval": 5,
        "learning_rate": 3e-4,
    },
}


def _request(work: Path, n: int, iters: int, **kw: object) -> TrainRequest:
    rng = np.random.default_rng(0)
    args: dict[str, object] = {
        "gcr": rng.uniform(0.80, 0.84, n),
        "spcf": rng.uniform(0.004, 0.006, n),
        "start_level": 0,
        "max_iterations": iters,
        "seed": 3,
        "device": "cpu",
        "work_dir": work,
        "settings": FAST,
    }
    args.update(kw)
    return TrainRequest(**args)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_backend_satisfies_protocol() -> None:
    backend: Backend = MujocoBackend()
    assert backend.name == "mujoco"


def test_short_training_improves_mean_reward(tmp_path: Path) -> None:
    history: list[dict[str, float]] = []
    written: list[Path] = []
    out = MujocoBackend().train(
        _request(tmp_path, 32, 60),
        on_progress=lambda it, total, m: history.append({"it": it, "total": total, **m}),
        on_checkpoint=written.append,
    )
    assert [h["it"] for h in history] == list(range(1, 61))
    assert all(h["total"] == 60 for h in history)
    # 100-step episodes end every 5 iterations; the first full episode is in iteration 5.
    rewards = [h["mean_reward"] for h in history[4:]]
    assert rewards[-1] > rewards[0] + 0.5, rewards
    end_x = [h["episode_root_x"] for h in history if "episode_root_x" in h]
    assert len(end_x) == 12
    assert np.mean(end_x[-3:]) > end_x[0] + 0.25, end_x  # it walks forward
    assert out.metrics["iterations"] == 60
    assert out.metrics["env_steps"] == 60 * 20 * 32
    assert out.metrics["best_mean_level"] >= out.metrics["mean_level"]
    assert out.best_checkpoint == tmp_path / BEST_NAME and out.best_checkpoint.is_file()
    assert out.last_checkpoint == tmp_path / LAST_NAME and out.last_checkpoint.is_file()
    assert set(written) == {out.best_checkpoint, out.last_checkpoint}
    assert any((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert not list(tmp_path.glob(".*.tmp"))


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    out = MujocoBackend().train(_request(tmp_path, 4, 2))
    ckpt = torch.load(out.last_checkpoint, weights_only=True)
    assert {"actor_state_dict", "critic_state_dict", "optimizer_state_dict", "iter"} <= set(ckpt)
    assert ckpt["iter"] == 2
    assert ckpt["infos"]["settings"]["ppo"]["actor_hidden_dims"] == [32, 32]
    assert "obs_normalizer._mean" in ckpt["actor_state_dict"]


def test_warm_start_resumes_weights_and_iteration(tmp_path: Path) -> None:
    backend = MujocoBackend()
    first = backend.train(_request(tmp_path / "a", 8, 5))
    ckpt = load_checkpoint(first.last_checkpoint)
    resumed = _request(tmp_path / "b", 8, 3, resume_checkpoint=first.last_checkpoint, seed=9)
    trainer = backend.build_trainer(resumed)
    assert trainer.start_iteration == 5
    actor = trainer.runner.alg.get_policy().state_dict()
    for key, value in ckpt["actor_state_dict"].items():
        torch.testing.assert_close(actor[key], value, rtol=0, atol=0)
    critic = trainer.runner.alg.critic.state_dict()
    for key, value in ckpt["critic_state_dict"].items():
        torch.testing.assert_close(critic[key], value, rtol=0, atol=0)
    its: list[int] = []
    out = backend.train(resumed, on_progress=lambda it, total, m: its.append(it))
    assert its == [6, 7, 8]
    assert out.metrics["iterations"] == 8
    assert out.metrics["env_steps"] == 3 * 20 * 8
    assert load_checkpoint(out.last_checkpoint)["iter"] == 8


def test_evaluate_returns_one_integer_level_per_design(tmp_path: Path) -> None:
    out = MujocoBackend().train(_request(tmp_path, 4, 2))
    levels = MujocoBackend().evaluate(
        EvalRequest(
            checkpoint=out.best_checkpoint,
            gcr=np.array([0.76, 0.8, 0.88]),
            spcf=np.array([0.002, 0.005, 0.009]),
            num_episodes=2,
            start_difficulty=3,
            seed=0,
            device="cpu",
            settings={"task": {"episode_steps": 30}},
        )
    )
    assert len(levels) == 3
    assert all(type(v) is int and 1 <= v <= 5 for v in levels)  # two episodes from 3


def test_bad_inputs_raise_pec_errors(tmp_path: Path) -> None:
    backend = MujocoBackend()
    with pytest.raises(ConfigError, match="ppo"):
        backend.train(_request(tmp_path, 2, 1, settings={"ppo": {"bogus": 1}}))
    with pytest.raises(InputError, match="gcr"):
        backend.train(_request(tmp_path, 2, 1, spcf=np.array([0.005])))
    with pytest.raises(InputError, match="NaN/inf"):
        backend.train(_request(tmp_path, 2, 1, gcr=np.array([0.8, np.nan])))
    with pytest.raises(InputError, match=r"start_level=75 is outside \[0, 74\]"):
        backend.train(_request(tmp_path, 2, 1, start_level=75))
    assert list(tmp_path.iterdir()) == []  # refused before the work folder was made
    bad = tmp_path / "bad.pt"
    torch.save({"x": object()}, bad)
    with pytest.raises(InputError, match=r"weights_only|cannot be read"):
        load_checkpoint(bad)


def test_same_seed_same_weights(tmp_path: Path) -> None:
    outs = [MujocoBackend().train(_request(tmp_path / str(i), 4, 3)) for i in range(2)]
    a, b = (load_checkpoint(o.last_checkpoint)["actor_state_dict"] for o in outs)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_probe_levels_agrees_with_one_curriculum_episode(tmp_path: Path) -> None:
    """A probe passes exactly when one evaluation episode from that level levels up."""
    out = MujocoBackend().train(_request(tmp_path, 4, 2))
    rng = np.random.default_rng(1)
    gcr, spcf = rng.uniform(0.75, 0.89, 8), rng.uniform(0.001, 0.01, 8)
    # A promotion line just past the start, so an almost untrained policy passes some probes.
    settings: dict[str, object] = {
        "task": {"episode_steps": 60, "promote_x": 0.02, "demote_x": -5.0}
    }
    backend = MujocoBackend()
    passed = backend.probe_levels(
        ProbeRequest(out.best_checkpoint, gcr, spcf, np.zeros(8, int), 0, "cpu", settings)
    )
    after = backend.evaluate(EvalRequest(out.best_checkpoint, gcr, spcf, 1, 0, 0, "cpu", settings))
    assert passed == [level == 1 for level in after]
    assert 0 < sum(passed) < 8  # both outcomes occur, so the agreement says something
    # Per-env levels: the same designs at the top level (0.741 m) all fail.
    top = backend.probe_levels(
        ProbeRequest(out.best_checkpoint, gcr, spcf, np.full(8, 74), 0, "cpu", settings)
    )
    assert top == [False] * 8
    with pytest.raises(InputError, match="levels"):
        backend.probe_levels(
            ProbeRequest(out.best_checkpoint, gcr, spcf, np.full(8, 75), 0, "cpu", settings)
        )


@pytest.mark.parametrize(("envs", "block", "expected"), [(4, 64, 1), (4, 2, 2), (6, 2, 2)])
def test_a_job_runs_torch_on_no_more_threads_than_physics_blocks(
    tmp_path: Path, envs: int, block: int, expected: int
) -> None:
    """A job given 2 threads by its policy: one physics block (the main job's case) trains on
    one torch thread; two or more blocks keep both; the caller's count comes back after."""
    settings = {**FAST, "task": {**FAST["task"], "physics_block_envs": block}}  # type: ignore[dict-item]
    seen: list[int] = []
    torch.set_num_threads(2)
    MujocoBackend().train(
        _request(tmp_path, envs, 1, settings=settings),
        on_progress=lambda it, total, metrics: seen.append(torch.get_num_threads()),
    )
    assert seen == [expected]
    assert torch.get_num_threads() == 2
