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

from pec.backends.ballu.facts import (
    CABLE_KD,
    CABLE_KP,
    GRAVITY,
    KNEE_MAX,
    SERVO_KD,
    SERVO_KP,
    SERVO_SPEED_LIMIT,
    SPRING_DAMPING,
    SPRING_REST,
    TORQUE_LIMIT,
    planar_leg_points,
)
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
        self._minus_two_spcf: FloatArray = -2.0 * self.spcf[:, None]
        self._minus_c = -self.drag_coefficient
        self._balloon_height = self.geometry.balloon_height
        # Views and scratch buffers of apply_forces (made once: it runs every physics step).
        self._knee_q, self._knee_qd = self.qpos[:, 5::3], self.qvel[:, 5::3]
        self._servo_q, self._servo_qd = self.qpos[:, 6::3], self.qvel[:, 6::3]
        self._knee_frc, self._servo_frc = self.qfrc[:, 5::3], self.qfrc[:, 6::3]
        self._balloon_fx, self._balloon_fz = self.balloon_frc[:, 0], self.balloon_frc[:, 2]
        self._buffers: dict[str, FloatArray] = {
            name: np.zeros((n, 2)) for name in ("spring", "pull", "tmp", "tau")
        }
        self._buffers.update({name: np.zeros(n) for name in ("phi", "omega", "v", "trig", "drag")})
        self._fast: NDArray[np.bool_] = np.zeros((n, 2), dtype=bool)
        self._pushing: NDArray[np.bool_] = np.zeros((n, 2), dtype=bool)
        self._init_q = np.array(
            [
                0.0,
                init_root_height,
                0.0,
                0.0,
                INIT_HIP,
                INIT_KNEE,
                INIT_SERVO,
                INIT_HIP,
                INIT_KNEE,
                INIT_SERVO,
            ]
        )
        self.reset(np.arange(n))

    # ------------------------------------------------------------------ design & scene
    def set_design(self, env_ids: NDArray[np.int64], gcr: FloatArray, spcf: FloatArray) -> None:
        """Per-env buoyancy ratio and knee spring coefficient."""
        self.gcr[env_ids] = gcr
        self.spcf[env_ids] = spcf
        self.buoyancy[env_ids] = self.gcr[env_ids] * self.robot_mass * GRAVITY
        self._minus_two_spcf[env_ids, 0] = -2.0 * self.spcf[env_ids]

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
        """Knee spring + cable, servo PD, buoyancy and drag for the current state.

        Runs before every `mj_step`, so it works in preallocated buffers with `out=` ufuncs
        (no temporaries, no `np.clip` wrapper); the arithmetic, operation by operation, is
        the torque law in the module docstring, so results are bit-identical to the plain form.
        """
        b = self._buffers
        qk, qdk, qs, qds = self._knee_q, self._knee_qd, self._servo_q, self._servo_qd
        # Knee: clip(-2 spcf (q + rest) - d q' + max(0, kp (target - q) - kd q'), +-limit)
        spring, pull, tmp = b["spring"], b["pull"], b["tmp"]
        np.add(qk, SPRING_REST, out=spring)
        np.multiply(self._minus_two_spcf, spring, out=spring)
        np.multiply(SPRING_DAMPING, qdk, out=tmp)
        np.subtract(spring, tmp, out=spring)
        np.subtract(self.knee_target, qk, out=pull)
        np.multiply(CABLE_KP, pull, out=pull)
        np.multiply(CABLE_KD, qdk, out=tmp)
        np.subtract(pull, tmp, out=pull)
        np.maximum(0.0, pull, out=pull)
        np.add(spring, pull, out=spring)
        np.maximum(spring, -TORQUE_LIMIT, out=spring)
        np.minimum(spring, TORQUE_LIMIT, out=self._knee_frc)
        # Servo PD with the speed limit: no torque pushing further past the top speed.
        tau = b["tau"]
        np.subtract(self.servo_target, qs, out=tau)
        np.multiply(SERVO_KP, tau, out=tau)
        np.multiply(SERVO_KD, qds, out=tmp)
        np.subtract(tau, tmp, out=tau)
        np.maximum(tau, -TORQUE_LIMIT, out=tau)
        np.minimum(tau, TORQUE_LIMIT, out=tau)
        fast, pushing = self._fast, self._pushing
        np.abs(qds, out=tmp)
        np.greater(tmp, SERVO_SPEED_LIMIT, out=fast)
        np.multiply(tau, qds, out=tmp)
        np.greater(tmp, 0, out=pushing)
        np.logical_and(fast, pushing, out=fast)
        np.putmask(tau, fast, 0.0)
        self._servo_frc[...] = tau
        # Balloon: buoyancy up, quadratic drag on the balloon centre's exact velocity.
        q, qd = self.qpos, self.qvel
        phi, omega, v, trig = b["phi"], b["omega"], b["v"], b["trig"]
        np.add(q[:, 2], q[:, 3], out=phi)
        np.add(qd[:, 2], qd[:, 3], out=omega)
        h = self._balloon_height
        np.cos(phi, out=trig)
        np.multiply(h, trig, out=trig)
        np.multiply(omega, trig, out=trig)
        np.add(qd[:, 0], trig, out=v)  # vx
        drag = b["drag"]
        np.abs(v, out=drag)
        np.multiply(self._minus_c, drag, out=drag)
        np.multiply(drag, v, out=self._balloon_fx)
        np.sin(phi, out=trig)
        np.multiply(h, trig, out=trig)
        np.multiply(omega, trig, out=trig)
        np.subtract(qd[:, 1], trig, out=v)  # vz
        np.abs(v, out=drag)
        np.multiply(self.drag_coefficient, drag, out=drag)
        np.multiply(drag, v, out=drag)
        np.subtract(self.buoyancy, drag, out=self._balloon_fz)

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
        knees, feet = planar_leg_points(self.qpos, g.femur_length, g.foot_offset, g.foot_radius)
        return knees, feet
