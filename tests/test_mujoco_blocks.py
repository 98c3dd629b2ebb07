"""Physics blocks: one job's robots as fixed-size MuJoCo scenes stepped on T threads.

A block is exactly a scene of its own (bit for bit), results do not depend on the number
of threads, a blow-up resets only its own block, and the thread count follows the job's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pec.backends.mujoco.blocks import BalluBlocks
from pec.backends.mujoco.env import BalluVecEnv
from pec.backends.mujoco.settings import BalluTaskSettings
from pec.backends.mujoco.sim import BalluSim


def _bits(a: np.ndarray) -> np.ndarray:
    """Raw IEEE bits: -0.0 vs 0.0 and NaN payloads count as differences."""
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def _task(block: int, **kw: object) -> BalluTaskSettings:
    return BalluTaskSettings(physics_block_envs=block, **kw)  # type: ignore[arg-type]


def test_blocks_step_exactly_like_separate_scenes() -> None:
    n, block = 10, 4
    rng = np.random.default_rng(1)
    gcr, spcf = rng.uniform(0.75, 0.89, n), rng.uniform(0.001, 0.01, n)
    heights = rng.uniform(0.0, 0.3, n)
    blocks = BalluBlocks(n, block_envs=block, threads=2)
    alone = [BalluSim(k) for k in (4, 4, 2)]
    assert [b.num_envs for b in blocks.blocks] == [4, 4, 2]
    ids = np.arange(n)
    blocks.set_design(ids, gcr, spcf)
    blocks.set_obstacle_heights(ids, heights)
    for sim, lo in zip(alone, (0, 4, 8), strict=True):
        own = np.arange(sim.num_envs)
        sim.set_design(own, gcr[lo : lo + sim.num_envs], spcf[lo : lo + sim.num_envs])
        sim.set_obstacle_heights(own, heights[lo : lo + sim.num_envs])
    np.testing.assert_array_equal(blocks.gcr, gcr)
    np.testing.assert_array_equal(blocks.obstacle_height, np.clip(heights, 1e-4, None))
    for step in range(40):
        actions = rng.uniform(0.0, 1.0, (n, 2))
        blocks.set_actions(actions)
        assert blocks.step(10).all()
        for sim, lo in zip(alone, (0, 4, 8), strict=True):
            sim.set_actions(actions[lo : lo + sim.num_envs])
            assert sim.step(10)
        if step == 20:  # a partial reset across two blocks
            blocks.reset(np.array([3, 4, 9]))
            alone[0].reset(np.array([3]))
            alone[1].reset(np.array([0]))
            alone[2].reset(np.array([1]))
    want_q = np.concatenate([s.qpos for s in alone])
    want_v = np.concatenate([s.qvel for s in alone])
    np.testing.assert_array_equal(_bits(blocks.qpos), _bits(want_q))
    np.testing.assert_array_equal(_bits(blocks.qvel), _bits(want_v))
    knees, feet = blocks.leg_points()
    np.testing.assert_array_equal(
        _bits(knees), _bits(np.concatenate([s.leg_points()[0] for s in alone]))
    )
    np.testing.assert_array_equal(
        _bits(feet), _bits(np.concatenate([s.leg_points()[1] for s in alone]))
    )
    assert abs(want_q[:, 0]).max() > 0.01  # the robots moved: the comparison compared motion
    blocks.close()


def _rollout(threads: int) -> list[np.ndarray]:
    env = BalluVecEnv(
        150,
        _task(32, episode_steps=12, curriculum_warmup_iterations=0),
        gcr_range=(0.75, 0.89),
        spcf_range=(0.001, 0.01),
        start_level=3,
        seed=4,
        threads=threads,
    )
    assert len(env.sim.blocks) == 5 and env.sim.threads == threads
    gen = torch.Generator().manual_seed(7)
    out: list[np.ndarray] = []
    for _ in range(30):  # 2.5 episodes: resets and level changes happen in between
        obs, rew, dones, _ = env.step(torch.rand(150, 2, generator=gen))
        out += [obs["policy"].numpy().copy(), rew.numpy().copy(), dones.numpy().copy()]
    out += [env.levels.copy(), env.sim.qpos.copy()]
    env.close()
    return out


def test_env_results_do_not_depend_on_the_thread_count() -> None:
    one = _rollout(1)
    for threads in (2, 3):
        other = _rollout(threads)
        for a, b in zip(one, other, strict=True):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8))
    assert any(d.any() for d in one[2:-2:3])  # episodes ended in between


def test_a_blow_up_resets_only_its_own_block() -> None:
    env = BalluVecEnv(12, _task(4), threads=2)
    env.step(torch.full((12, 2), 0.5))
    env.sim.qvel[5, 5] = 1e30  # env 5 lives in block 1 (envs 4..7)
    _, _, dones, extras = env.step(torch.full((12, 2), 0.5))
    lost = np.zeros(12, dtype=bool)
    lost[4:8] = True
    np.testing.assert_array_equal(dones.numpy().astype(bool), lost)
    assert not extras["time_outs"].any()
    np.testing.assert_allclose(env.sim.qpos[4:8, 1], 1.2)  # reset to the start pose
    assert np.all(env.sim.qpos[~lost, 1] != 1.2)  # the others went on falling
    env.close()


def test_physics_threads_follow_the_jobs_torch_threads() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        env = BalluVecEnv(12, _task(4))
        assert env.sim.threads == 2
        env.close()
        torch.set_num_threads(1)
        env = BalluVecEnv(12, _task(4))
        assert env.sim.threads == 1
    finally:
        torch.set_num_threads(before)


def test_bad_block_size_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="physics_block_envs"):
        _task(0)


def test_blocks_give_each_block_its_own_legs_and_step_like_separate_scenes() -> None:
    """A 3-D design (per-env leg length) reaches the right block: masses, buoyancy and the
    trajectory equal separate scenes built with each block's slice of the legs."""
    n, block = 5, 2
    rng = np.random.default_rng(7)
    legs = rng.uniform(0.20, 0.48, n)
    gcr, spcf = rng.uniform(0.75, 0.89, n), rng.uniform(0.001, 0.01, n)
    blocks = BalluBlocks(n, block_envs=block, threads=2, legs=legs)
    alone = [BalluSim(hi - lo, legs=legs[lo:hi]) for lo, hi in ((0, 2), (2, 4), (4, 5))]
    want_mass = np.concatenate([np.broadcast_to(s.robot_mass, (s.num_envs,)) for s in alone])
    np.testing.assert_array_equal(np.asarray(blocks.robot_mass), want_mass)
    assert len(set(want_mass.tolist())) == n  # every leg length its own mass
    ids = np.arange(n)
    blocks.set_design(ids, gcr, spcf)
    for sim, lo in zip(alone, (0, 2, 4), strict=True):
        sim.set_design(
            np.arange(sim.num_envs), gcr[lo : lo + sim.num_envs], spcf[lo : lo + sim.num_envs]
        )
    np.testing.assert_array_equal(blocks.buoyancy, np.concatenate([s.buoyancy for s in alone]))
    for _ in range(20):
        actions = rng.uniform(0.0, 1.0, (n, 2))
        blocks.set_actions(actions)
        assert blocks.step(10).all()
        for sim, lo in zip(alone, (0, 2, 4), strict=True):
            sim.set_actions(actions[lo : lo + sim.num_envs])
            assert sim.step(10)
    np.testing.assert_array_equal(
        _bits(blocks.qpos), _bits(np.concatenate([s.qpos for s in alone]))
    )
