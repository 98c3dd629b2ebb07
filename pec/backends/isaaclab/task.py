"""pec's BALLU obstacle task on Isaac Lab 3.0: a `DirectRLEnv` and its rsl-rl `VecEnv`.

Imports Isaac Lab; only `pec.backends.isaaclab.backend` imports this module, lazily.

The scene (see docs/BALLU_ISAACLAB.md): one planar BALLU per env (USD converted from pec's
MJCF), replicated physics (robots of different envs never touch), and one static world
shared by all envs: a ground plane and 75 obstacle rows, obstacle i centred at
(1.0, -2 i) with its top at `level_height(i)`. An env whose next obstacle is level L is
placed at y = -2 L at reset (the original task's layout), so nothing is resized at run
time. Forces every physics step: knee spring + cable and servo PD as joint efforts,
buoyancy and quadratic drag as a world-frame force on the balloon's centre of mass. The
maths (torque laws, observations, rewards, terminations, level rule) is
`pec.backends.ballu`'s, shared with the MuJoCo backend.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import MISSING
from typing import Any

import gymnasium as gym
import isaaclab.sim as sim_utils
import numpy as np
import torch
import warp as wp
from isaaclab.actuators import ImplicitActuatorCfg
from isaaclab.assets import ArticulationCfg, AssetBaseCfg
from isaaclab.cloner import CloneCfg
from isaaclab.envs import DirectRLEnv, DirectRLEnvCfg
from isaaclab.scene import InteractiveSceneCfg
from isaaclab.sim import SimulationCfg
from isaaclab.utils import configclass
from numpy.typing import NDArray
from rsl_rl.env import VecEnv
from tensordict import TensorDict

from pec.backends.ballu import facts, schedule, terrain
from pec.backends.ballu.body import JOINT_NAMES, UNBUOYED_BODIES, BalluBody
from pec.backends.ballu.settings import BalluTaskSettings
from pec.backends.isaaclab.assets import ROW_SPACING, AssetPaths, ensure_leg_robots, leg_key
from pec.backends.isaaclab.settings import NewtonSettings
from pec.maths.curriculum import MAX_LEVEL

log = logging.getLogger(__name__)

GYM_ID = "Pec-Ballu-Obstacle-Direct-v0"
# Indices into the joint order JOINT_NAMES (the MuJoCo backend's qpos layout).
Q_X, Q_Z = 0, 1
KNEES = [5, 8]
SERVOS = [6, 9]
# The same columns as strided views (no gather per physics step): knees 5, 8; servos 6, 9.
KNEE_COLS = slice(KNEES[0], KNEES[1] + 1, KNEES[1] - KNEES[0])
SERVO_COLS = slice(SERVOS[0], SERVOS[1] + 1, SERVOS[1] - SERVOS[0])


@configclass
class BalluSceneCfg(InteractiveSceneCfg):  # type: ignore[misc,unused-ignore]
    robot: ArticulationCfg = MISSING  # type: ignore[assignment,unused-ignore]
    world: AssetBaseCfg = MISSING  # type: ignore[assignment,unused-ignore]


@configclass
class BalluEnvCfg(DirectRLEnvCfg):  # type: ignore[misc,unused-ignore]
    action_space = facts.NUM_ACTIONS
    observation_space = facts.NUM_OBS
    state_space = 0
    decimation = 10
    episode_length_s = 20.0
    sim: SimulationCfg = MISSING  # type: ignore[assignment,unused-ignore]
    scene: BalluSceneCfg = MISSING  # type: ignore[assignment,unused-ignore]


def robot_cfg(
    assets: AssetPaths, task: BalluTaskSettings, leg_usds: Sequence[str] | None = None
) -> ArticulationCfg:
    """The articulation: joint order as in MuJoCo, every joint driven by pec or passive.

    With `leg_usds` (one robot USD per distinct leg length) the robot is a multi-USD spawn:
    one prototype per file, each env cloned from the one its design asks for.

    The USD carries the MJCF's joint damping and armature (`BalluBody`), and MuJoCo-Warp
    simulates them as the MuJoCo backend does; the actuator groups only tell Isaac Lab that
    no drive acts on a joint (zero stiffness and zero drive damping: a drive damping would
    add a second damper on top of the joint's own) and cap the knee and servo efforts that
    pec computes (`facts.knee_torque`, `facts.servo_torque`).
    """
    g = BalluBody()
    spawn: Any = sim_utils.UsdFileCfg(usd_path=str(assets.robot))
    if leg_usds is not None:
        spawn = sim_utils.MultiUsdFileCfg(usd_path=list(leg_usds), random_choice=False)
    return ArticulationCfg(
        prim_path="{ENV_REGEX_NS}/Robot",
        spawn=spawn,
        init_state=ArticulationCfg.InitialStateCfg(
            pos=(0.0, 0.0, task.init_root_height),
            joint_pos={
                "root_.*": 0.0,
                "neck": 0.0,
                "hip_.*": facts.INIT_HIP,
                "knee_.*": facts.INIT_KNEE,
                "servo_.*": facts.INIT_SERVO,
            },
        ),
        joint_ordering=list(JOINT_NAMES),
        actuators={
            "passive": ImplicitActuatorCfg(
                joint_names_expr=["root_.*", "neck", "hip_.*"], stiffness=0.0, damping=0.0
            ),
            "knees": ImplicitActuatorCfg(
                joint_names_expr=["knee_.*"],
                stiffness=0.0,
                damping=0.0,
                effort_limit_sim=facts.TORQUE_LIMIT,
            ),
            "servos": ImplicitActuatorCfg(
                joint_names_expr=["servo_.*"],
                stiffness=0.0,
                damping=0.0,
                effort_limit_sim=facts.TORQUE_LIMIT,
                armature=g.servo_armature,
            ),
        },
    )


def physics_cfg(physics: str, device: str, newton: NewtonSettings) -> Any:
    """Newton with the MuJoCo-Warp solver (kit-less), or Isaac Sim's PhysX."""
    if physics == "physx":
        from isaaclab_physx.physics import PhysxCfg

        return PhysxCfg()
    from isaaclab_newton.physics import MJWarpSolverCfg, NewtonCfg

    body = BalluBody()  # the cone and integrator the MuJoCo backend's MJCF names too
    return NewtonCfg(
        solver_cfg=MJWarpSolverCfg(
            njmax=newton.njmax,
            nconmax=newton.nconmax,
            iterations=newton.iterations,
            ls_iterations=newton.ls_iterations,
            cone=body.friction_cone,
            integrator=body.integrator,
        ),
        num_substeps=1,
        use_cuda_graph=device.startswith("cuda"),
    )


def make_env_cfg(
    task: BalluTaskSettings,
    num_envs: int,
    device: str,
    physics: str,
    newton: NewtonSettings,
    assets: AssetPaths,
    legs: tuple[list[str], NDArray[np.int64]] | None = None,
) -> BalluEnvCfg:
    """The env's configuration; `legs` = (robot USD per leg key, each env's key index)."""
    decimation = task.decimation
    clone = CloneCfg()
    if legs is not None:
        clone = CloneCfg(clone_strategy=functools.partial(_fixed_layout, legs[1].copy()))
    return BalluEnvCfg(
        observation_space=facts.NUM_OBS + (0 if legs is None else 1),
        decimation=decimation,
        # the time-out is counted in control steps by the env itself (no float rounding)
        episode_length_s=(task.episode_steps + 1) / task.control_hz,
        sim=SimulationCfg(
            dt=1.0 / task.physics_hz,
            render_interval=decimation,
            device=device,
            physics=physics_cfg(physics, device, newton),
        ),
        scene=BalluSceneCfg(
            num_envs=num_envs,
            env_spacing=0.0,
            replicate_physics=True,
            clone_cfg=clone,
            robot=robot_cfg(assets, task, None if legs is None else legs[0]),
            world=AssetBaseCfg(
                prim_path="/World/ballu_world",
                spawn=sim_utils.UsdFileCfg(usd_path=str(assets.world)),
            ),
        ),
    )


def _fixed_layout(layout: NDArray[np.int64], weights: np.ndarray, num_clones: int) -> np.ndarray:
    """Clone strategy: env i gets robot prototype layout[i] (its leg length's USD)."""
    if layout.shape != (num_clones,) or layout.max() >= len(weights):
        raise RuntimeError(f"leg layout {layout.tolist()} does not fit {num_clones} envs")
    return layout


class BalluEnv(DirectRLEnv):  # type: ignore[misc,unused-ignore]  # isaaclab: no types
    """BALLU robots stepping over the obstacle of their level, one per env."""

    cfg: BalluEnvCfg

    def __init__(
        self,
        cfg: BalluEnvCfg,
        render_mode: str | None = None,
        *,
        task: BalluTaskSettings,
        gcr: NDArray[np.float64],
        spcf: NDArray[np.float64],
        start_level: int,
        seed: int,
        eval_mode: bool,
        leg: NDArray[np.float64] | None = None,
        **kwargs: Any,
    ) -> None:
        n = cfg.scene.num_envs
        self.leg = leg
        self.task = task
        self.eval_mode = eval_mode
        self.iteration = 0
        self.rng = np.random.default_rng(seed)
        self.levels: NDArray[np.int64] = np.full(n, start_level, dtype=np.int64)
        self.obstacle_levels: NDArray[np.int64] = self.levels.copy()
        self.replaying: NDArray[np.bool_] = np.zeros(n, dtype=bool)
        self.episodes_done: NDArray[np.int64] = np.zeros(n, dtype=np.int64)
        self.ended_x: list[float] = []
        self.last_end_x: NDArray[np.float64] = np.full(n, np.nan)  # root x at each env's last end
        self._rows: NDArray[np.int64] = np.full(n, -1, dtype=np.int64)  # placed obstacle row
        self._initial_reset = True
        super().__init__(cfg, render_mode, **kwargs)
        dev = self.device
        self.robot = self.scene["robot"]
        names = list(self.robot.joint_names)
        if names != list(JOINT_NAMES):
            raise RuntimeError(f"BALLU USD joint order {names} != {list(JOINT_NAMES)}")
        self.balloon_id = int(self.robot.find_bodies("balloon")[0][0])
        # Index arrays handed to Isaac Lab every physics step, made once as Warp arrays: Isaac
        # Lab turns a list into a new Warp array per call, and tests a tensor against
        # slice(None) elementwise (~0.1 ms per call here).
        self.effort_ids: Any = wp.array(KNEES + SERVOS, dtype=wp.int32, device=str(dev))
        self.balloon_ids: Any = wp.array([self.balloon_id], dtype=wp.int32, device=str(dev))
        masses = self.robot.data.body_mass.torch[0].to("cpu", torch.float64)
        # Every body that moves vertically (all but the x-slide link) is carried by buoyancy.
        buoyed = [i for i, b in enumerate(self.robot.body_names) if b not in UNBUOYED_BODIES]
        self.robot_mass: Any = float(masses[buoyed].sum())
        self.body = BalluBody()
        g = self.body
        self.femur: Any = g.femur_length
        self.foot_offset: Any = g.foot_offset
        if leg is not None:  # each env's robot was built from its rounded leg length
            all_masses = self.robot.data.body_mass.torch.to(dev, torch.float32)
            self.robot_mass = all_masses[:, buoyed].sum(1)
            built = torch.as_tensor(
                [float(leg_key(v)) for v in leg], dtype=torch.float32, device=dev
            )[:, None]
            self.femur, self.foot_offset = built, built + g.electronics_length
        self.set_design(torch.as_tensor(gcr), torch.as_tensor(spcf))
        self.obstacle_height = torch.zeros(n, device=dev)
        self.servo_tgt = torch.full((n, 2), facts.INIT_SERVO, device=dev)
        self.knee_tgt = facts.knee_target(self.servo_tgt)
        self.prev_actions = self.servo_tgt / math.pi
        self.zero_torque = torch.zeros((n, 1, 3), device=dev)
        self.goal_factor = schedule.goal_factor(task, 0, eval_mode)
        self.log_items: dict[str, float] = {}

    # ------------------------------------------------------------------ state
    def planar_state(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(q, qd) as (n, 10) in the MuJoCo layout, root z as absolute height."""
        q = self.robot.data.joint_pos.torch.clone()
        q[:, Q_Z] += self.task.init_root_height
        return q, self.robot.data.joint_vel.torch

    def leg_points(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.body
        knees, feet = facts.planar_leg_points(q, self.femur, self.foot_offset, g.foot_radius)
        return knees, feet

    def set_design(self, gcr: torch.Tensor, spcf: torch.Tensor) -> None:
        """Per-env buoyancy ratio and knee spring coefficient (all envs)."""
        self.gcr = torch.as_tensor(gcr, dtype=torch.float32, device=self.device)
        self.spcf = torch.as_tensor(spcf, dtype=torch.float32, device=self.device)
        self.buoyancy = facts.buoyancy_force(self.gcr, self.robot_mass)
        morph = [
            facts.normalised_design(self.gcr, self.task.gcr_norm_range),
            facts.normalised_design(self.spcf, self.task.spcf_norm_range),
        ]
        if self.leg is not None:  # the policy observes its leg length (a 3-D run)
            leg = torch.as_tensor(self.leg, dtype=torch.float32, device=self.device)
            morph.append(facts.normalised_design(leg, self.task.leg_norm_range))
        self.morph = torch.stack(morph, 1)

    def set_training_iteration(self, iteration: int) -> None:
        self.iteration = iteration
        self.goal_factor = schedule.goal_factor(self.task, iteration, self.eval_mode)

    # ------------------------------------------------------------------ DirectRLEnv hooks
    def _pre_physics_step(self, actions: torch.Tensor) -> None:
        a = torch.nan_to_num(actions.float(), nan=0.0, posinf=1.0, neginf=0.0)
        # Written into the env's own buffers: a tensor made here under torch.inference_mode
        # (evaluation, probes) could not be updated in place by a later reset outside it.
        self.servo_tgt.copy_(facts.servo_target(a))
        self.knee_tgt.copy_(facts.knee_target(self.servo_tgt))
        self.prev_actions.copy_(a.clamp(-1.0, 2.0))

    def _apply_action(self) -> None:
        q = self.robot.data.joint_pos.torch
        qd = self.robot.data.joint_vel.torch
        knee = facts.knee_torque(
            q[:, KNEE_COLS], qd[:, KNEE_COLS], self.knee_tgt, self.spcf[:, None]
        )
        servo = facts.servo_torque(q[:, SERVO_COLS], qd[:, SERVO_COLS], self.servo_tgt)
        self.robot.set_joint_effort_target_index(
            target=torch.cat([knee, servo], 1), joint_ids=self.effort_ids
        )
        v = self.robot.data.body_com_lin_vel_w.torch[:, self.balloon_id]
        force = facts.drag_force(v, self.task.drag_coefficient)
        force[:, 2] += self.buoyancy
        self.robot.permanent_wrench_composer.set_forces_and_torques_index(
            forces=force[:, None, :],
            torques=self.zero_torque,
            body_ids=self.balloon_ids,
            is_global=True,
        )

    def _get_observations(self) -> dict[str, torch.Tensor]:
        q, qd = self.planar_state()
        knees, _ = self.leg_points(q)
        t = self.task
        face = t.obstacle_start_x
        obs = torch.cat(
            [
                q[:, 2:],
                qd,
                face - q[:, 0:1],
                self.obstacle_height[:, None],
                q[:, 0:1],
                q[:, 1:2] - t.init_root_height,
                t.goal_x - q[:, 0:1],
                face - knees[:, :, 0],
                self.prev_actions,
                self.morph,
            ],
            1,
        )
        obs = torch.nan_to_num(obs, nan=0.0, posinf=facts.OBS_CLIP, neginf=-facts.OBS_CLIP)
        return {"policy": obs}

    def _get_rewards(self) -> torch.Tensor:
        t = self.task
        q, qd = self.planar_state()
        _, feet = self.leg_points(q)
        r_goal = t.goal_weight * facts.goal_reward(
            feet[:, :, 0].mean(1), t.goal_x, self.goal_factor
        )
        z = terrain.foot_clearance(
            t.terrain_shape, feet[:, :, 0], feet[:, :, 1], self.obstacle_height
        )
        r_height = t.height_weight * facts.height_reward(z)
        r_vel = t.velocity_weight * facts.velocity_reward(qd[:, 0])
        self.log_items["/reward/goal"] = float(torch.nan_to_num(r_goal).mean())
        self.log_items["/reward/height"] = float(torch.nan_to_num(r_height).mean())
        self.log_items["/reward/velocity"] = float(torch.nan_to_num(r_vel).mean())
        total = (r_goal + r_height + r_vel) * t.reward_scale
        return torch.nan_to_num(total, nan=0.0, posinf=0.0, neginf=0.0)

    def _get_dones(self) -> tuple[torch.Tensor, torch.Tensor]:
        q, qd = self.planar_state()
        _, feet = self.leg_points(q)
        finite = torch.isfinite(q).all(1) & torch.isfinite(qd).all(1)
        speed = torch.hypot(qd[:, 0], qd[:, 1])
        bad = (
            ~finite
            | (speed > facts.MAX_ROOT_SPEED)
            | (q[:, Q_Z] > facts.MAX_ROOT_HEIGHT)
            | (feet[:, :, 1] > facts.MAX_FOOT_HEIGHT).any(1)
        )
        time_out = (self.episode_length_buf >= self.task.episode_steps) & ~bad
        return bad, time_out

    def _reset_idx(self, env_ids: Sequence[int] | torch.Tensor | None) -> None:
        if env_ids is None:
            env_ids = torch.arange(self.num_envs, device=self.device)
        ids_t = torch.as_tensor(env_ids, device=self.device).long()
        ids = ids_t.cpu().numpy().astype(np.int64)
        if self._initial_reset:
            obstacle = self.levels[ids].copy()
        else:
            end_x = self.robot.data.joint_pos.torch[ids_t, Q_X].to("cpu", torch.float64).numpy()
            self.ended_x.extend(np.nan_to_num(end_x).tolist())
            self.last_end_x[ids] = end_x
            obstacle = schedule.end_episodes(
                self.task,
                self.levels,
                self.replaying,
                ids,
                end_x,
                active=schedule.curriculum_active(self.task, self.iteration, self.eval_mode),
                eval_mode=self.eval_mode,
                rng=self.rng,
            )
            self.episodes_done[ids] += 1
        super()._reset_idx(ids_t.int())
        self.obstacle_levels[ids] = obstacle
        self.obstacle_height[ids_t] = torch.as_tensor(
            self.task.terrain_shape.level_height(obstacle), dtype=torch.float32, device=self.device
        )
        moved = obstacle != self._rows[ids]
        if moved.any():  # re-anchoring a fixed-base root updates the model: only when needed
            move_ids = ids[moved]
            pose = torch.zeros((move_ids.size, 7), device=self.device)
            pose[:, 1] = torch.as_tensor(-ROW_SPACING * obstacle[moved], device=self.device)
            pose[:, 2] = self.task.init_root_height
            pose[:, 6] = 1.0  # quaternion (x, y, z, w)
            self.robot.write_root_pose_to_sim_index(
                root_pose=pose, env_ids=torch.as_tensor(move_ids, device=self.device).int()
            )
            self._rows[move_ids] = obstacle[moved]
        joint_pos = self.robot.data.default_joint_pos.torch[ids_t].clone()
        joint_vel = torch.zeros_like(joint_pos)
        self.robot.write_joint_position_to_sim_index(position=joint_pos, env_ids=ids_t.int())
        self.robot.write_joint_velocity_to_sim_index(velocity=joint_vel, env_ids=ids_t.int())
        self.servo_tgt[ids_t] = facts.INIT_SERVO
        self.knee_tgt[ids_t] = facts.knee_target(self.servo_tgt[ids_t])
        self.prev_actions[ids_t] = self.servo_tgt[ids_t] / math.pi


def register() -> None:
    """Register pec's gym id (idempotent)."""
    if GYM_ID not in gym.registry:
        gym.register(id=GYM_ID, entry_point=f"{__name__}:BalluEnv", disable_env_checker=True)


class IsaacBalluVecEnv(VecEnv):  # type: ignore[misc]  # rsl_rl ships no type information
    """rsl-rl's view of `BalluEnv`, with the same interface as the MuJoCo `BalluVecEnv`."""

    def __init__(self, env: BalluEnv) -> None:
        self.env = env
        self.num_envs = env.num_envs
        self.num_actions = facts.NUM_ACTIONS
        self.max_episode_length = env.task.episode_steps
        self.device = str(env.device)
        self.cfg = env.task.model_dump()
        self.eval_mode = env.eval_mode
        env.reset()
        env._initial_reset = False

    @property
    def levels(self) -> NDArray[np.int64]:
        return self.env.levels

    @property
    def episodes_done(self) -> NDArray[np.int64]:
        return self.env.episodes_done

    @property
    def episode_length_buf(self) -> torch.Tensor:
        buf: torch.Tensor = self.env.episode_length_buf
        return buf

    @episode_length_buf.setter
    def episode_length_buf(self, value: torch.Tensor) -> None:
        self.env.episode_length_buf = value

    def set_training_iteration(self, iteration: int) -> None:
        self.env.set_training_iteration(iteration)

    def get_observations(self) -> TensorDict:
        obs = self.env.obs_buf["policy"]
        return TensorDict({"policy": obs}, batch_size=[self.num_envs], device=self.device)

    def step(
        self, actions: torch.Tensor
    ) -> tuple[TensorDict, torch.Tensor, torch.Tensor, dict[str, Any]]:
        env = self.env
        n_ended = len(env.ended_x)
        _, rew, terminated, time_outs, _ = env.step(actions.to(env.device))
        dones = terminated | time_outs
        log_items = dict(env.log_items)
        if len(env.ended_x) > n_ended:
            log_items["/episode/root_x"] = float(np.mean(env.ended_x[n_ended:]))
            done_count = int(dones.sum())
            log_items["/episode/terminated"] = float(terminated.sum()) / max(done_count, 1)
        log_items["/curriculum/mean_level"] = float(env.levels.mean())
        log_items["/curriculum/max_level"] = float(env.levels.max())
        extras = {"time_outs": time_outs, "log": log_items}
        return self.get_observations(), rew, dones.long(), extras

    def pop_episode_root_x(self) -> float:
        """Mean final root x of the episodes ended since the last call (NaN if none)."""
        values, self.env.ended_x = self.env.ended_x, []
        return float(np.mean(values)) if values else float("nan")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.env.close()


def make_vec_env(
    *,
    task: BalluTaskSettings,
    gcr: NDArray[np.float64],
    spcf: NDArray[np.float64],
    start_level: int,
    seed: int,
    device: str,
    physics: str,
    newton: NewtonSettings,
    assets: AssetPaths,
    eval_mode: bool = False,
    leg: NDArray[np.float64] | None = None,
) -> IsaacBalluVecEnv:
    """Create the gym env under pec's id and wrap it for rsl-rl.

    With `leg` (one length per env), one robot USD per distinct rounded leg length is
    converted (cached) and each env is cloned from its own.
    """
    if not 0 <= start_level <= MAX_LEVEL:
        raise ValueError(f"start_level={start_level} is outside [0, {MAX_LEVEL}]")
    register()
    legs = None
    if leg is not None:
        usds = ensure_leg_robots(task.ground_friction, [float(v) for v in leg])
        keys = sorted(usds)
        layout = np.array([keys.index(leg_key(v)) for v in leg], dtype=np.int64)
        legs = ([str(usds[k]) for k in keys], layout)
    cfg = make_env_cfg(task, int(gcr.size), device, physics, newton, assets, legs)
    cfg.seed = seed
    env: BalluEnv = gym.make(  # type: ignore[assignment,unused-ignore]
        GYM_ID,
        cfg=cfg,
        task=task,
        gcr=gcr,
        spcf=spcf,
        start_level=start_level,
        seed=seed,
        eval_mode=eval_mode,
        leg=None if leg is None else np.asarray(leg, dtype=np.float64),
    ).unwrapped
    return IsaacBalluVecEnv(env)
