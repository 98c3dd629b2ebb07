"""BalluVecEnv: curriculum, resets, obstacles, design priority, VecEnv contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pec.backends.ballu import facts, terrain
from pec.backends.mujoco.env import NUM_OBS, BalluVecEnv, resolve_design
from pec.backends.mujoco.model import INIT_HIP, INIT_KNEE, OBSTACLE_GEOM_OFFSET
from pec.backends.mujoco.rewards import RewardKernel
from pec.backends.mujoco.settings import BalluTaskSettings, MujocoSettings
from pec.errors import ConfigError


def _task(**kw: object) -> BalluTaskSettings:
    """Task settings without replay episodes unless a test asks for them."""
    return BalluTaskSettings.model_validate({"replay_probability": 0.0, **kw})


def _obstacle_heights(env: BalluVecEnv) -> np.ndarray:
    """Top of each env's box above the ground (the box is buried below z = 0), read from
    the compiled model of every physics block."""
    tops = []
    for block in env.sim.blocks:
        ids = np.arange(block.num_envs) + OBSTACLE_GEOM_OFFSET
        tops.append(block.model.geom_pos[ids, 2] + block.model.geom_size[ids, 2])
    return np.concatenate(tops)


def test_level_rule_at_episode_end_after_warmup() -> None:
    env = BalluVecEnv(6, _task(curriculum_warmup_iterations=3), start_level=5)
    env.levels[:] = [0, 5, 5, 5, 74, 5]
    root_x = np.array([1.2, 1.2, 0.3, 0.7, 1.5, 1.0])
    env.set_training_iteration(2)  # still warming up: levels stay
    env.end_episodes(np.arange(6), root_x)
    assert env.levels.tolist() == [0, 5, 5, 5, 74, 5]
    env.set_training_iteration(3)
    env.end_episodes(np.arange(6), root_x)
    # > 1.0 up, < 0.5 down, else unchanged (1.0 exactly stays), clipped to [0, 74]
    assert env.levels.tolist() == [1, 6, 4, 5, 74, 5]
    assert env.levels.dtype == np.int64
    np.testing.assert_allclose(
        _obstacle_heights(env), 0.001 + 0.010 * np.array([1, 6, 4, 5, 74, 5]), atol=1e-12
    )
    # only the envs that ended change
    env.end_episodes(np.array([0]), np.array([0.1]))
    assert env.levels.tolist() == [0, 6, 4, 5, 74, 5]


def test_level_rule_runs_inside_step_on_time_out() -> None:
    env = BalluVecEnv(3, _task(episode_steps=2, curriculum_warmup_iterations=0), start_level=2)
    zero = torch.zeros(3, 2)
    _, _, dones, extras = env.step(zero)
    assert not dones.any() and not extras["time_outs"].any()
    env.sim.qpos[:, 0] = [1.5, 0.7, 0.2]  # place the robots, then finish the episode
    _, _, dones, extras = env.step(zero)
    assert dones.tolist() == [1, 1, 1]
    assert extras["time_outs"].tolist() == [True, True, True]
    assert env.levels.tolist() == [3, 2, 1]
    assert extras["log"]["/curriculum/mean_level"] == pytest.approx(2.0)
    np.testing.assert_allclose(env.sim.qpos[:, 0], 0.0)  # reset after the level update
    assert env.episode_length_buf.tolist() == [0, 0, 0]


def test_early_termination_is_not_a_time_out() -> None:
    env = BalluVecEnv(2, _task(curriculum_warmup_iterations=0), start_level=3)
    env.sim.qpos[1, 1] = 6.0  # root above 5 m
    env.sim.qpos[1, 0] = 1.3
    _, _, dones, extras = env.step(torch.zeros(2, 2))
    assert dones.tolist() == [0, 1]
    assert extras["time_outs"].tolist() == [False, False]
    assert env.levels.tolist() == [3, 4]


def test_obstacle_heights_follow_start_level() -> None:
    env = BalluVecEnv(4, start_level=7)
    np.testing.assert_allclose(_obstacle_heights(env), 0.071, atol=1e-12)
    assert env.sim.model.geom_pos[OBSTACLE_GEOM_OFFSET, 0] == pytest.approx(1.0)  # x 0.5..1.5
    assert env.sim.model.geom_size[OBSTACLE_GEOM_OFFSET, 0] == pytest.approx(0.5)


def test_reset_touches_only_the_reset_envs() -> None:
    env = BalluVecEnv(3, _task(curriculum_warmup_iterations=0), start_level=4)
    for _ in range(5):
        env.step(torch.full((3, 2), 0.8))
    before_q = env.sim.qpos.copy()
    before_v = env.sim.qvel.copy()
    before_steps = env.episode_steps.copy()
    env.reset_envs(np.array([1]))
    for i in (0, 2):
        np.testing.assert_array_equal(env.sim.qpos[i], before_q[i])
        np.testing.assert_array_equal(env.sim.qvel[i], before_v[i])
        assert env.episode_steps[i] == before_steps[i]
    assert env.sim.qpos[1, 1] == pytest.approx(1.2)
    assert env.sim.qpos[1, 5] == pytest.approx(INIT_KNEE)
    assert env.sim.qpos[1, 4] == pytest.approx(INIT_HIP)
    np.testing.assert_array_equal(env.sim.qvel[1], 0.0)
    assert env.episode_steps[1] == 0
    assert env.levels.tolist() == [4, 4, 4]


def test_design_priority_values_over_range_over_scalar() -> None:
    rng = np.random.default_rng(0)
    vals = np.array([0.76, 0.88])
    got = resolve_design(2, "gcr", vals, (0.8, 0.81), 0.85, rng)
    np.testing.assert_array_equal(got, vals)
    got = resolve_design(50, "gcr", None, (0.8, 0.81), 0.85, np.random.default_rng(1))
    assert got.min() >= 0.8 and got.max() <= 0.81 and np.unique(got).size == 50
    again = resolve_design(50, "gcr", None, (0.8, 0.81), 0.85, np.random.default_rng(1))
    np.testing.assert_array_equal(got, again)  # seeded
    np.testing.assert_array_equal(resolve_design(3, "gcr", None, None, 0.85, rng), 0.85)
    with pytest.raises(ConfigError, match="gcr_values"):
        resolve_design(3, "gcr", vals, None, 0.85, rng)


def test_env_applies_per_env_designs() -> None:
    env = BalluVecEnv(
        2, gcr_values=np.array([0.75, 0.89]), spcf_range=(0.002, 0.003), spcf=0.009, seed=4
    )
    np.testing.assert_array_equal(env.sim.gcr, [0.75, 0.89])
    assert np.all((env.sim.spcf >= 0.002) & (env.sim.spcf <= 0.003))
    np.testing.assert_allclose(env.sim.buoyancy, np.array([0.75, 0.89]) * env.sim.robot_mass * 9.81)
    obs = env.get_observations()["policy"]
    np.testing.assert_allclose(obs[:, -2].numpy(), [-1.0, 1.0], atol=1e-6)  # normalised GCR


def test_vecenv_contract_shapes() -> None:
    env = BalluVecEnv(4)
    obs = env.get_observations()
    assert obs["policy"].shape == (4, NUM_OBS) and obs["policy"].dtype == torch.float32
    obs, rew, dones, extras = env.step(torch.rand(4, 2))
    assert rew.shape == (4,) and dones.shape == (4,)
    assert extras["time_outs"].shape == (4,)
    assert torch.isfinite(obs["policy"]).all() and torch.isfinite(rew).all()
    assert env.max_episode_length == 400 and env.num_actions == 2


def test_goal_warmup_ramp_and_eval_mode() -> None:
    task = _task(goal_warmup_iterations=10, goal_ramp_iterations=20)
    env = BalluVecEnv(1, task)
    env.set_training_iteration(5)
    assert env.goal_factor == 0.0
    env.set_training_iteration(20)
    assert env.goal_factor == pytest.approx(0.5)
    env.set_training_iteration(40)
    assert env.goal_factor == 1.0
    ev = BalluVecEnv(1, task, eval_mode=True)
    assert ev.goal_factor == 1.0 and ev.curriculum_active


def test_rewards_hand_computed_at_reset_pose() -> None:
    task = _task(goal_warmup_iterations=0, goal_ramp_iterations=0, reward_scale=1.0)
    env = BalluVecEnv(1, task)
    env.sim.qvel[0, 0] = 0.5
    total, (goal, height, vel) = env._compute_rewards()
    _, feet = env.sim.leg_points()
    d = abs(2.0 - feet[0, :, 0].mean())
    assert goal[0] == pytest.approx(5 * (1 - 0.33 * d))
    assert height[0] == pytest.approx(np.expm1(1.73 * feet[0, :, 1].min()))
    assert vel[0] == pytest.approx(1.5)
    env.sim.qvel[0, 0] = -0.5
    assert env._compute_rewards()[1][2][0] == pytest.approx(3 * np.expm1(-0.5))
    env.sim.qvel[0, 0] = 0.9
    assert env._compute_rewards()[1][2][0] == 0.0
    assert total.shape == (1,)


def test_settings_reject_unknown_fields() -> None:
    with pytest.raises(ValueError):
        MujocoSettings.model_validate({"task": {"nope": 1}})
    with pytest.raises(ValueError, match="whole number"):
        MujocoSettings.model_validate({"task": {"physics_hz": 200, "control_hz": 30}})


def test_scene_blow_up_fails_every_env_without_level_change() -> None:
    # MuJoCo resets all of mjData on a non-finite state; no robot may keep a teleported state.
    env = BalluVecEnv(3, _task(curriculum_warmup_iterations=0), start_level=2)
    env.sim.qvel[1, 5] = 1e30
    obs, rew, dones, extras = env.step(torch.zeros(3, 2))
    assert dones.tolist() == [1, 1, 1]
    assert not extras["time_outs"].any()
    assert env.levels.tolist() == [2, 2, 2]
    np.testing.assert_allclose(env.sim.qpos[:, 1], 1.2)
    assert torch.isfinite(obs["policy"]).all() and torch.isfinite(rew).all()


def test_replay_episodes_use_lower_obstacles_and_keep_levels() -> None:
    env = BalluVecEnv(400, _task(curriculum_warmup_iterations=0, replay_probability=0.5))
    env.levels[:] = 10
    ids = np.arange(400)
    env.end_episodes(ids, np.full(400, 0.7))  # x in [0.5, 1]: levels stay at 10
    assert np.all(env.levels == 10)
    replay = env.replaying.copy()
    assert 150 < replay.sum() < 250  # about half
    heights = _obstacle_heights(env)
    np.testing.assert_allclose(heights[~replay], 0.101)
    replay_levels = np.round((heights[replay] - 0.001) / 0.010).astype(int)
    assert replay_levels.min() >= 0 and replay_levels.max() <= 10
    assert np.unique(replay_levels).size > 5
    # the level rule skips replay episodes but still runs for the others
    env.end_episodes(ids, np.full(400, 1.2))
    np.testing.assert_array_equal(env.levels[replay], 10)
    np.testing.assert_array_equal(env.levels[~replay], 11)
    # evaluation never replays
    ev = BalluVecEnv(50, _task(replay_probability=1.0), start_level=5, eval_mode=True)
    ev.end_episodes(np.arange(50), np.full(50, 0.7))
    assert not ev.replaying.any()
    np.testing.assert_allclose(_obstacle_heights(ev), 0.051)


def _bits(a: np.ndarray) -> np.ndarray:
    """The raw IEEE bits, so -0.0 vs 0.0 and NaN payloads count as differences."""
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def _facts_rewards(
    task: BalluTaskSettings,
    feet_x: np.ndarray,
    feet_z: np.ndarray,
    vx: np.ndarray,
    obstacle_height: np.ndarray,
    factor: float,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The env's reward written plainly from the shared facts functions (no buffers)."""
    mean_x = (feet_x[:, 0] + feet_x[:, 1]) / 2
    r_goal = task.goal_weight * facts.goal_reward(mean_x, task.goal_x, factor)
    z = terrain.foot_clearance(task.terrain_shape, feet_x, feet_z, obstacle_height)
    r_height = task.height_weight * facts.height_reward(z)
    r_vel = task.velocity_weight * facts.velocity_reward(vx)
    return (r_goal + r_height + r_vel) * task.reward_scale, (r_goal, r_height, r_vel)


@pytest.mark.parametrize("kind", ["obstacle", "ramp"])
def test_reward_kernel_equals_the_facts_formulas_bit_for_bit(kind: str) -> None:
    task = _task(reward_scale=0.37, terrain=kind)
    specials = np.array(
        [0.0, -0.0, np.inf, -np.inf, np.nan, 0.5, 1.5, 1.8, 0.8, 2.0, -1e-300, 5e-324]
    )
    rng = np.random.default_rng(7)
    for n in (1, 37, 64):
        kernel = RewardKernel(n, task)
        for trial in range(40):
            legs = rng.normal(1.0, 1.5, size=(2, n, 2))  # [x | z] blocks like leg_points
            state = rng.normal(0.0, 1.5, size=(n, 10))
            heights = rng.uniform(1e-4, 0.8, size=n)
            if trial % 2:  # sprinkle edge values over every operand
                for arr in (legs.reshape(-1), state[:, 0], heights):
                    hit = rng.random(arr.size) < 0.3
                    arr[hit] = rng.choice(specials, size=int(hit.sum()))
            feet = legs.transpose(1, 2, 0)
            factor = float(rng.choice([0.0, 0.25, 1.0]))
            with np.errstate(all="ignore"):
                want, want_parts = _facts_rewards(
                    task, feet[:, :, 0], feet[:, :, 1], state[:, 0], heights, factor
                )
                got, got_parts = kernel(feet[:, :, 0], feet[:, :, 1], state[:, 0], heights, factor)
            for w, g in zip((want, *want_parts), (got, *got_parts), strict=True):
                assert np.array_equal(_bits(w), _bits(g))


class _PlainRewardEnv(BalluVecEnv):
    """The env with rewards and terminations written plainly from the facts functions."""

    def _compute_rewards(self, feet: np.ndarray | None = None) -> tuple[np.ndarray, tuple]:
        s = self.sim
        _, feet = s.leg_points()
        total, parts = _facts_rewards(
            self.task,
            feet[:, :, 0],
            feet[:, :, 1],
            s.qvel[:, 0],
            s.obstacle_height,
            self.goal_factor,
        )
        return np.nan_to_num(total, nan=0.0, posinf=0.0, neginf=0.0), parts

    def _terminated(self, feet: np.ndarray | None = None) -> np.ndarray:
        s = self.sim
        _, feet = s.leg_points()
        finite = (np.isfinite(s.qpos) & np.isfinite(s.qvel)).all(1)
        with np.errstate(invalid="ignore"):
            bad = (
                (np.hypot(s.qvel[:, 0], s.qvel[:, 1]) > facts.MAX_ROOT_SPEED)
                | (s.qpos[:, 1] > facts.MAX_ROOT_HEIGHT)
                | (feet[:, :, 1] > facts.MAX_FOOT_HEIGHT).any(1)
            )
        return bad | ~finite


@pytest.mark.parametrize("kind", ["obstacle", "ramp"])
def test_env_outputs_equal_a_plain_facts_reference_over_resets(kind: str) -> None:
    # Short episodes, a live curriculum and the goal ramp: 300 control steps with many resets.
    task = _task(
        terrain=kind,
        episode_steps=25,
        curriculum_warmup_iterations=0,
        goal_warmup_iterations=1,
        goal_ramp_iterations=4,
        replay_probability=0.3,
    )
    kw = {"gcr_range": (0.75, 0.89), "spcf_range": (0.001, 0.01), "seed": 3}
    fast, plain = BalluVecEnv(16, task, **kw), _PlainRewardEnv(16, task, **kw)
    gen = torch.Generator().manual_seed(5)
    resets = 0
    for step in range(300):
        for env in (fast, plain):
            env.set_training_iteration(step // 50)
        actions = torch.rand(16, 2, generator=gen) * 1.4 - 0.2
        f_obs, f_rew, f_done, f_ext = fast.step(actions)
        p_obs, p_rew, p_done, p_ext = plain.step(actions)
        assert torch.equal(f_obs["policy"], p_obs["policy"])
        assert torch.equal(f_rew, p_rew) and torch.equal(f_done, p_done)
        assert torch.equal(f_ext["time_outs"], p_ext["time_outs"])
        assert f_ext["log"] == p_ext["log"]
        assert torch.equal(fast.episode_length_buf, plain.episode_length_buf)
        resets += int(f_done.sum())
    assert np.array_equal(fast.levels, plain.levels)
    assert resets > 16 * 300 // 25 // 2  # resets really happened (time-outs and falls)
