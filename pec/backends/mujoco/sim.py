"""Vectorised BALLU physics: one MuJoCo scene, per-robot forces computed in numpy.

Everything that is not rigid-body dynamics (buoyancy, balloon drag, the knee's spring and
cable, the servo PD) is applied as generalised/Cartesian forces before every `mj_step`,
using strided views of mjData so the per-step overhead stays small next to `mj_step`.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np
from numpy.typing import NDArray

from pec.backends.mujoco.model import (
    BALLOON_BODY,
    BODIES_PER_ROBOT,
    DOF_PER_ROBOT,
    INIT_HIP,
    INIT_KNEE,
    INIT_SERVO,
    MAX_OBSTACLE_HEIGHT,
    OBSTACLE_BURIAL,
    OBSTACLE_GEOM_OFFSET,
    BalluGeometry,
    build_model,
)

FloatArray = NDArray[np.float64]

GRAVITY = 9.81
KNEE_MAX = 1.745
TORQUE_LIMIT = 0.0848
SPRING_REST = 0.7854  # the spring is preloaded against this knee rest angle
SPRING_DAMPING = 0.001
CABLE_KP = 1.0
CABLE_KD = 0.08
SERVO_KP = 1.0
SERVO_KD = 0.01
SERVO_SPEED_LIMIT = 7.48


class BalluSim:
    """`num_envs` planar BALLU robots advanced together by one `mj_step`."""

    def __init__(
        self,
        num_envs: int,
        physics_hz: float = 200.0,
        drag_coefficient: float = 0.4,
        init_root_height: float = 1.2,
        lane_spacing: float = 1.0,
        obstacle_start_x: float = 0.5,
        obstacle_length: float = 1.0,
        obstacle_width: float = 0.6,
        friction: float = 0.5,
        geometry: BalluGeometry | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1; pass at least one design")
        self.geometry = geometry or BalluGeometry()
        self.num_envs = num_envs
        self.model = build_model(
            num_envs,
            1.0 / physics_hz,
            lane_spacing,
            obstacle_start_x,
            obstacle_length,
            obstacle_width,
            friction,
            self.geometry,
        )
        self.data = mujoco.MjData(self.model)
        self.drag_coefficient = drag_coefficient
        self.init_root_height = init_root_height
        self.obstacle_start_x = obstacle_start_x
        self.obstacle_length = obstacle_length
        n = num_envs
        # Strided views: row i is robot i (layout guaranteed by build_model).
        self.qpos: FloatArray = self.data.qpos.reshape(n, DOF_PER_ROBOT)
        self.qvel: FloatArray = self.data.qvel.reshape(n, DOF_PER_ROBOT)
        self.qfrc: FloatArray = self.data.qfrc_applied.reshape(n, DOF_PER_ROBOT)
        self.balloon_frc: FloatArray = self.data.xfrc_applied[1:].reshape(n, BODIES_PER_ROBOT, 6)[
            :, BALLOON_BODY
        ]
        self.robot_mass = float(
            self.model.body_mass[1 : 1 + BODIES_PER_ROBOT].sum()
        )  # all robots are identical
        self.gcr: FloatArray = np.full(n, 0.8)
        self.spcf: FloatArray = np.full(n, 0.005)
        self.buoyancy: FloatArray = self.gcr * self.robot_mass * GRAVITY
        self.knee_target: FloatArray = np.zeros((n, 2))
        self.servo_target: FloatArray = np.zeros((n, 2))
        self.obstacle_height: FloatArray = np.zeros(n)
        leg = (INIT_HIP, INIT_KNEE, INIT_SERVO)  # the same pose for both legs
        self._init_q = np.array([0.0, init_root_height, 0.0, 0.0, *leg, *leg])
        self.reset(np.arange(n))

    # ------------------------------------------------------------------ design & scene
    def set_design(self, env_ids: NDArray[np.int64], gcr: FloatArray, spcf: FloatArray) -> None:
        """Per-env buoyancy ratio and knee spring coefficient."""
        self.gcr[env_ids] = gcr
        self.spcf[env_ids] = spcf
        self.buoyancy[env_ids] = self.gcr[env_ids] * self.robot_mass * GRAVITY

    def set_obstacle_heights(self, env_ids: NDArray[np.int64], heights: FloatArray) -> None:
        """Resize each env's obstacle box in place (compiled at the largest size).

        The box spans z from -OBSTACLE_BURIAL to the height: its top is the obstacle.
        """
        h = np.clip(np.asarray(heights, dtype=np.float64), 1e-4, MAX_OBSTACLE_HEIGHT)
        geom_ids = env_ids + OBSTACLE_GEOM_OFFSET
        self.model.geom_size[geom_ids, 2] = (h + OBSTACLE_BURIAL) / 2
        self.model.geom_pos[geom_ids, 2] = (h - OBSTACLE_BURIAL) / 2
        self.obstacle_height[env_ids] = h

    def reset(self, env_ids: NDArray[np.int64]) -> None:
        """Initial pose, zero velocity and zero applied force for these envs only."""
        self.qpos[env_ids] = self._init_q
        self.qvel[env_ids] = 0.0
        self.qfrc[env_ids] = 0.0
        self.balloon_frc[env_ids] = 0.0
        warm = self.data.qacc_warmstart.reshape(self.num_envs, DOF_PER_ROBOT)
        warm[env_ids] = 0.0
        self.servo_target[env_ids] = INIT_SERVO
        self.knee_target[env_ids] = INIT_SERVO * KNEE_MAX / math.pi

    # ------------------------------------------------------------------ stepping
    def set_actions(self, actions: FloatArray) -> None:
        """Map raw actions (num_envs, 2) to servo and knee targets."""
        self.servo_target[:] = np.clip(math.pi * actions, 0.0, math.pi)
        self.knee_target[:] = self.servo_target * (KNEE_MAX / math.pi)

    def apply_forces(self) -> None:
        """Knee spring + cable, servo PD, buoyancy and drag for the current state."""
        q = self.qpos
        qd = self.qvel
        qk = q[:, 5::3]
        qdk = qd[:, 5::3]
        spring = -2.0 * self.spcf[:, None] * (qk + SPRING_REST) - SPRING_DAMPING * qdk
        pull = np.maximum(0.0, CABLE_KP * (self.knee_target - qk) - CABLE_KD * qdk)
        self.qfrc[:, 5::3] = np.clip(spring + pull, -TORQUE_LIMIT, TORQUE_LIMIT)
        qs = q[:, 6::3]
        qds = qd[:, 6::3]
        tau = np.clip(
            SERVO_KP * (self.servo_target - qs) - SERVO_KD * qds, -TORQUE_LIMIT, TORQUE_LIMIT
        )
        # Speed limit: no torque that would push the servo further past its top speed.
        tau[(np.abs(qds) > SERVO_SPEED_LIMIT) & (tau * qds > 0)] = 0.0
        self.qfrc[:, 6::3] = tau
        phi = q[:, 2] + q[:, 3]
        omega = qd[:, 2] + qd[:, 3]
        h = self.geometry.balloon_height
        vx = qd[:, 0] + omega * (h * np.cos(phi))
        vz = qd[:, 1] - omega * (h * np.sin(phi))
        c = self.drag_coefficient
        self.balloon_frc[:, 0] = -c * np.abs(vx) * vx
        self.balloon_frc[:, 2] = self.buoyancy - c * np.abs(vz) * vz

    def step(self, n_steps: int) -> bool:
        """Advance all robots `n_steps` physics steps; False if MuJoCo had to reset mjData.

        MuJoCo resets the *whole* mjData when the state or accelerations blow up
        (mjWARN_BADQPOS/BADQVEL/BADQACC), which would teleport every robot; the caller must
        then treat all envs as failed.
        """
        m, d = self.model, self.data
        before = self._instability_count()
        for _ in range(n_steps):
            self.apply_forces()
            mujoco.mj_step(m, d)
        return self._instability_count() == before

    def _instability_count(self) -> int:
        w = self.data.warning
        kinds = (
            mujoco.mjtWarning.mjWARN_BADQPOS,
            mujoco.mjtWarning.mjWARN_BADQVEL,
            mujoco.mjtWarning.mjWARN_BADQACC,
        )
        return sum(int(w[int(k)].number) for k in kinds)

    # ------------------------------------------------------------------ kinematics
    def leg_points(self) -> tuple[FloatArray, FloatArray]:
        """Knee and foot (x, z) per robot and leg, from the planar chain: (n, 2, 2) each."""
        g = self.geometry
        q = self.qpos
        hip_angle = q[:, 2:3] + q[:, 4::3]
        knee_angle = hip_angle + q[:, 5::3]
        knee_x = q[:, 0:1] - g.femur_length * np.sin(hip_angle)
        knee_z = q[:, 1:2] - g.femur_length * np.cos(hip_angle)
        foot_x = knee_x - g.foot_offset * np.sin(knee_angle)
        foot_z = knee_z - g.foot_offset * np.cos(knee_angle) - g.foot_radius
        knees = np.stack([knee_x, knee_z], axis=-1)
        feet = np.stack([foot_x, foot_z], axis=-1)
        return knees, feet
