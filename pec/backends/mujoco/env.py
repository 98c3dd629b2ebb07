"""`BalluVecEnv`: the BALLU obstacle task as an rsl-rl-lib `VecEnv` over one MuJoCo scene.

The env owns the curriculum (integer levels, one obstacle per env) and the warm-ups, which
are measured in PPO iterations: the trainer calls `set_training_iteration(i)` before each
iteration. In evaluation mode both warm-ups are bypassed.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from pec.backends.ballu import schedule
from pec.backends.ballu.facts import (
    MAX_FOOT_HEIGHT,
    MAX_ROOT_HEIGHT,
    MAX_ROOT_SPEED,
    NUM_ACTIONS,
)
from pec.backends.ballu.facts import NUM_OBS as NUM_OBS
from pec.backends.mujoco.blocks import BalluBlocks
from pec.backends.mujoco.rewards import RewardKernel
from pec.backends.mujoco.settings import BalluTaskSettings
from pec.backends.mujoco.sim import FloatArray
from pec.errors import ConfigError
from pec.maths.curriculum import MAX_LEVEL

log = logging.getLogger(__name__)

# Longest leg (femur = tibia) whose foot starts above the ground from the reset pose at the
# default root height 1.2 m (hip 1 deg, knee 27.35 deg): L + 0.88 (L + 0.06) + 0.004 < 1.2.
MAX_LEG = 0.6


def resolve_design(
    num_envs: int,
    name: str,
    values: NDArray[np.float64] | None,
    value_range: tuple[float, float] | None,
    scalar: float,
    rng: np.random.Generator,
) -> FloatArray:
    """Per-env design values: explicit array > uniform range (seeded rng) > scalar."""
    if values is not None:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.shape != (num_envs,):
            raise ConfigError(
                f"{name}_values has {arr.size} entries for {num_envs} envs; pass one per env"
            )
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"{name}_values contains NaN/inf; pass finite design values")
        return arr.copy()
    if value_range is not None:
        lo, hi = value_range
        if not lo <= hi:
            raise ConfigError(f"{name}_range=({lo}, {hi}) is reversed; pass (low, high)")
        return rng.uniform(lo, hi, size=num_envs)
    return np.full(num_envs, float(scalar))


def check_legs(leg: FloatArray) -> None:
    """Leg lengths a robot can be built with: finite and within (0, MAX_LEG] m."""
    if not np.all(np.isfinite(leg)) or np.any(leg <= 0.0) or np.any(leg > MAX_LEG):
        bad = leg[~(np.isfinite(leg) & (leg > 0.0) & (leg <= MAX_LEG))][0]
        raise ConfigError(
            f"leg length {bad} m is outside (0, {MAX_LEG}]; pass leg lengths in metres"
            " (the original's range is 0.20-0.48)"
        )


def finite_or(values: FloatArray, nan: float, posinf: float, neginf: float) -> FloatArray:
    """`np.nan_to_num` with a fast path: an all-finite array (the usual case) is returned as is."""
    if np.logical_and.reduce(np.isfinite(values), None):  # `.all()` without its wrapper
        return values
    cleaned: FloatArray = np.nan_to_num(values, nan=nan, posinf=posinf, neginf=neginf)
    return cleaned


class BalluVecEnv(VecEnv):  # type: ignore[misc]  # rsl_rl ships no type information
    """Many BALLU robots stepping over their own obstacles, as torch tensors for rsl-rl."""

    def __init__(
        self,
        num_envs: int,
        task: BalluTaskSettings | None = None,
        *,
        gcr_values: NDArray[np.float64] | None = None,
        spcf_values: NDArray[np.float64] | None = None,
        leg_values: NDArray[np.float64] | None = None,
        gcr_range: tuple[float, float] | None = None,
        spcf_range: tuple[float, float] | None = None,
        gcr: float = 0.82,
        spcf: float = 0.005,
        start_level: int = 0,
        seed: int = 0,
        device: str = "cpu",
        eval_mode: bool = False,
        threads: int | None = None,
    ) -> None:
        """`threads`: physics threads (None: torch's thread count, which a job sets to its
        spec's `threads`); results do not depend on it (see `pec.backends.mujoco.blocks`)."""
        if not 0 <= start_level <= MAX_LEVEL:
            raise ConfigError(f"start_level={start_level} is outside [0, {MAX_LEVEL}]; clip it")
        self.task = task or BalluTaskSettings()  # type: ignore[call-arg]
        t = self.task
        self.num_envs = num_envs
        self.num_actions = NUM_ACTIONS
        self.max_episode_length = t.episode_steps
        self.device = device
        self._on_cpu = torch.device(device).type == "cpu"
        self.cfg = t.model_dump()
        self.eval_mode = eval_mode
        self.iteration = 0
        self.start_level = start_level
        self.rng = np.random.default_rng(seed)
        # Leg lengths (femur = tibia = leg, m) per env: the design space's third axis. None
        # keeps the default robot and the 2-D observation (bit for bit as before).
        self.leg: FloatArray | None = None
        if leg_values is not None:
            self.leg = resolve_design(num_envs, "leg", leg_values, None, 0.0, self.rng)
            check_legs(self.leg)
        self.num_obs = NUM_OBS + (0 if self.leg is None else 1)
        self.sim = BalluBlocks(
            num_envs,
            block_envs=t.physics_block_envs,
            threads=torch.get_num_threads() if threads is None else threads,
            physics_hz=t.physics_hz,
            drag_coefficient=t.drag_coefficient,
            init_root_height=t.init_root_height,
            lane_spacing=t.lane_spacing,
            obstacle_start_x=t.obstacle_start_x,
            obstacle_length=t.obstacle_length,
            obstacle_width=t.obstacle_width,
            friction=t.ground_friction,
            terrain=t.terrain,
            legs=self.leg,
        )
        self.terrain = t.terrain_shape
        all_ids = np.arange(num_envs)
        self.gcr = resolve_design(num_envs, "gcr", gcr_values, gcr_range, gcr, self.rng)
        self.spcf = resolve_design(num_envs, "spcf", spcf_values, spcf_range, spcf, self.rng)
        self.sim.set_design(all_ids, self.gcr, self.spcf)
        self.levels: NDArray[np.int64] = np.full(num_envs, start_level, dtype=np.int64)
        self.sim.set_obstacle_heights(all_ids, self.terrain.level_height(self.levels))
        self.prev_actions: FloatArray = np.zeros((num_envs, NUM_ACTIONS))
        self.episode_steps: NDArray[np.int64] = np.zeros(num_envs, dtype=np.int64)
        self.episode_length_buf = torch.zeros(num_envs, dtype=torch.long, device=device)
        glo, ghi = t.gcr_norm_range
        slo, shi = t.spcf_norm_range
        morph = [(self.gcr - glo) / (ghi - glo) * 2 - 1, (self.spcf - slo) / (shi - slo) * 2 - 1]
        if self.leg is not None:  # the policy sees its leg length too (the original's vector)
            llo, lhi = t.leg_norm_range
            morph.append((self.leg - llo) / (lhi - llo) * 2 - 1)
        self._morph = np.stack(morph, 1)
        self.episodes_done: NDArray[np.int64] = np.zeros(num_envs, dtype=np.int64)
        # Root x at the end of each env's latest episode (NaN before the first; a blow-up stays NaN).
        self.last_root_x: FloatArray = np.full(num_envs, np.nan)
        self._ended_x: list[float] = []
        # True while an env plays a replay episode at a lower obstacle (no level change).
        self.replaying: NDArray[np.bool_] = np.zeros(num_envs, dtype=bool)
        self._rewards = RewardKernel(num_envs, t)
        self.reset_envs(all_ids)
        self._obs = self._compute_obs()

    # ------------------------------------------------------------------ schedule
    def set_training_iteration(self, iteration: int) -> None:
        """Tell the env which PPO iteration is running (drives both warm-ups)."""
        self.iteration = iteration

    @property
    def curriculum_active(self) -> bool:
        """The level rule runs in evaluation, or after the curriculum warm-up."""
        return schedule.curriculum_active(self.task, self.iteration, self.eval_mode)

    @property
    def goal_factor(self) -> float:
        """Goal-reward weight factor: 0 during warm-up, then a linear ramp to 1."""
        return schedule.goal_factor(self.task, self.iteration, self.eval_mode)

    # ------------------------------------------------------------------ VecEnv API
    def _tensor(self, values: NDArray[Any], dtype: type[np.generic]) -> torch.Tensor:
        """A numpy result as a tensor of `dtype` on the env's device.

        Converted by numpy and wrapped by `torch.from_numpy`: a torch op per conversion costs
        more than the numbers themselves at small env counts.
        """
        tensor = torch.from_numpy(np.asarray(values, dtype=dtype))
        return tensor if self._on_cpu else tensor.to(self.device)

    def get_observations(self) -> TensorDict:
        obs = self._tensor(self._obs, np.float32)
        return TensorDict({"policy": obs}, batch_size=[self.num_envs], device=self.device)

    def step(
        self, actions: torch.Tensor
    ) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict[str, Any]]:
        if not self._on_cpu:
            actions = actions.cpu()
        act = np.asarray(actions.detach().numpy(), dtype=np.float64)
        act = finite_or(act, nan=0.0, posinf=1.0, neginf=0.0)
        self.sim.set_actions(act)
        self.prev_actions = np.clip(act, -1.0, 2.0)
        stable = self.sim.step(self.task.decimation)  # per env: False where MuJoCo reset it
        self.episode_steps += 1
        knees, feet = self.sim.leg_points()  # once for rewards, terminations, observations
        rewards, parts = self._compute_rewards(feet)
        terminated = self._terminated(feet)
        if not np.logical_and.reduce(stable, None):  # a block's mjData was reset under us:
            # every env of that block failed, no level change
            lost = ~stable
            log.warning(
                "MuJoCo reset %d envs' scene (unstable accelerations); resetting them",
                int(lost.sum()),
            )
            terminated[lost] = True
            self.sim.qpos[lost, 0] = np.nan
        time_outs = (self.episode_steps >= self.max_episode_length) & ~terminated
        dones = terminated | time_outs
        done_ids = np.nonzero(dones)[0]
        n = self.num_envs  # means as sum / n: what .mean() computes, without its overhead
        log_items: dict[str, float] = {
            "/reward/goal": float(np.add.reduce(parts[0])) / n,
            "/reward/height": float(np.add.reduce(parts[1])) / n,
            "/reward/velocity": float(np.add.reduce(parts[2])) / n,
        }
        if done_ids.size:
            end_x = self.sim.qpos[done_ids, 0].copy()
            log_items["/episode/root_x"] = float(np.nan_to_num(end_x).mean())
            self._ended_x.extend(np.nan_to_num(end_x).tolist())
            log_items["/episode/terminated"] = float(terminated[done_ids].mean())
            self.end_episodes(done_ids, end_x)
        log_items["/curriculum/mean_level"] = float(np.add.reduce(self.levels)) / n
        log_items["/curriculum/max_level"] = float(np.maximum.reduce(self.levels))
        self._obs = self._compute_obs(None if done_ids.size else knees)  # resets moved knees
        self.episode_length_buf = self._tensor(self.episode_steps.copy(), np.int64)
        extras = {"time_outs": self._tensor(time_outs, np.bool_), "log": log_items}
        rew = self._tensor(rewards, np.float32)
        done_t = self._tensor(dones, np.int64)
        return self.get_observations(), rew, done_t, extras

    def close(self) -> None:
        """Stop the physics threads."""
        self.sim.close()

    def pop_episode_root_x(self) -> float:
        """Mean final root x of the episodes ended since the last call (NaN if none)."""
        values, self._ended_x = self._ended_x, []
        return float(np.mean(values)) if values else float("nan")

    # ------------------------------------------------------------------ episodes
    def end_episodes(self, env_ids: NDArray[np.int64], root_x: FloatArray) -> None:
        """Episode-end hook: level rule (if active), next obstacle, then reset these envs.

        A replay episode (training only, see `replay_probability`) leaves the level alone.
        """
        ids = np.asarray(env_ids, dtype=np.int64)
        self.last_root_x[ids] = root_x
        obstacle_levels = schedule.end_episodes(
            self.task,
            self.levels,
            self.replaying,
            ids,
            root_x,
            active=self.curriculum_active,
            eval_mode=self.eval_mode,
            rng=self.rng,
        )
        self.episodes_done[ids] += 1
        self.sim.set_obstacle_heights(ids, self.terrain.level_height(obstacle_levels))
        self.reset_envs(ids)

    def set_levels(self, levels: NDArray[np.int64]) -> None:
        """Put every env at its own level and restart its episode there (level probes)."""
        new = np.asarray(levels, dtype=np.int64).reshape(-1)
        if new.shape != (self.num_envs,):
            raise ConfigError(f"{new.size} levels for {self.num_envs} envs; pass one per env")
        all_ids = np.arange(self.num_envs)
        self.levels = new.copy()
        self.sim.set_obstacle_heights(all_ids, self.terrain.level_height(self.levels))
        self.reset_envs(all_ids)
        self._obs = self._compute_obs()

    def reset_envs(self, env_ids: NDArray[np.int64]) -> None:
        """Reset only these envs' robots, counters and previous actions."""
        self.sim.reset(env_ids)
        self.episode_steps[env_ids] = 0
        self.prev_actions[env_ids] = self.sim.servo_target[env_ids] / np.pi

    # ------------------------------------------------------------------ task maths
    def _compute_obs(self, knees: FloatArray | None = None) -> FloatArray:
        s = self.sim
        q, qd = s.qpos, s.qvel
        if knees is None:
            knees, _ = s.leg_points()
        t = self.task
        face = t.obstacle_start_x
        # Filled column block by column block (one allocation, no concatenate of temporaries).
        obs = np.empty((self.num_envs, self.num_obs))
        obs[:, 0:8] = q[:, 2:]  # pitch, neck, hips, knees, servos (8)
        obs[:, 8:18] = qd  # root vx, vz, pitch rate and joint velocities (10)
        np.subtract(face, q[:, 0], out=obs[:, 18])  # root to obstacle face
        obs[:, 19] = s.obstacle_height
        obs[:, 20] = q[:, 0]  # root position relative to the start
        np.subtract(q[:, 1], t.init_root_height, out=obs[:, 21])
        np.subtract(t.goal_x, q[:, 0], out=obs[:, 22])  # goal relative to the root
        np.subtract(face, knees[:, :, 0], out=obs[:, 23:25])  # each knee's distance to the face
        obs[:, 25:27] = self.prev_actions
        obs[:, 27:] = self._morph  # GCR, spcf (and leg), normalised
        return finite_or(obs, nan=0.0, posinf=100.0, neginf=-100.0)

    def _compute_rewards(
        self, feet: FloatArray | None = None
    ) -> tuple[FloatArray, tuple[FloatArray, FloatArray, FloatArray]]:
        """Scaled total and weighted parts; the parts are buffers, valid until the next call.

        The facts formulas (goal on the mean foot x, clearance, height, velocity) in the
        kernel's buffered form (`pec.backends.mujoco.rewards`, equal bit for bit); planar:
        feet are centred on y = 0, so the goal distance is along x.
        """
        s = self.sim
        if feet is None:
            _, feet = s.leg_points()
        total, parts = self._rewards(
            feet[:, :, 0], feet[:, :, 1], s.qvel[:, 0], s.obstacle_height, self.goal_factor
        )
        return finite_or(total, nan=0.0, posinf=0.0, neginf=0.0), parts

    def _terminated(self, feet: FloatArray | None = None) -> NDArray[np.bool_]:
        s = self.sim
        if feet is None:
            _, feet = s.leg_points()
        # the reductions `.all(1)` / `.any(1)` run, without their wrappers
        finite = np.logical_and.reduce(np.isfinite(s.qpos) & np.isfinite(s.qvel), 1)
        speed = np.hypot(s.qvel[:, 0], s.qvel[:, 1])
        with np.errstate(invalid="ignore"):
            bad = (
                (speed > MAX_ROOT_SPEED)
                | (s.qpos[:, 1] > MAX_ROOT_HEIGHT)
                | np.logical_or.reduce(feet[:, :, 1] > MAX_FOOT_HEIGHT, 1)
            )
        result: NDArray[np.bool_] = bad | ~finite
        return result
