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

from pec.backends.ballu.body import BODY_NAMES, UNBUOYED_BODIES, BalluBody
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
)
from pec.backends.mujoco.model import (
    BALLOON_BODY,
    BODIES_PER_ROBOT,
    DOF_PER_ROBOT,
    INIT_HIP,
    INIT_KNEE,
    INIT_SERVO,
    MAX_OBSTACLE_HEIGHT,
    MAX_RAMP_HEIGHT,
    OBSTACLE_BURIAL,
    OBSTACLE_GEOM_OFFSET,
    build_model,
    ramp_pose,
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
        body: BalluBody | None = None,
        terrain: str = "obstacle",
        legs: FloatArray | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1; pass at least one design")
        self.body = body or BalluBody()
        self.num_envs = num_envs
        self.model = build_model(
            num_envs,
            1.0 / physics_hz,
            lane_spacing,
            obstacle_start_x,
            obstacle_length,
            obstacle_width,
            friction,
            self.body,
            terrain,
            None if legs is None else [float(v) for v in legs],
        )
        self.terrain = terrain
        # Per-env leg lengths (femur = tibia, m); None: every robot is `body`.
        self.legs: FloatArray | None = None if legs is None else np.array(legs, dtype=np.float64)
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
        # The mass buoyancy carries: every body but the x-slide link; one number when all
        # robots are equal (robot 0's), else one per env (each robot's own legs).
        buoyed = [i for i, name in enumerate(BODY_NAMES) if name not in UNBUOYED_BODIES]
        self.robot_mass: float | FloatArray = float(self.model.body_mass[1:][buoyed].sum())
        if self.legs is not None:
            masses = self.model.body_mass[1:].reshape(n, BODIES_PER_ROBOT)
            self.robot_mass = np.array([float(masses[i][buoyed].sum()) for i in range(n)])
        self.gcr: FloatArray = np.full(n, 0.8)
        self.spcf: FloatArray = np.full(n, 0.005)
        self.buoyancy: FloatArray = self.gcr * self.robot_mass * GRAVITY
        self.obstacle_height: FloatArray = np.zeros(n)
        self._minus_c = -self.drag_coefficient
        self._balloon_height = self.body.balloon_height
        self._init_fast_paths()
        # A live view of mjData's warning counters (mjData's own resets write into it too).
        self._warning_number: NDArray[np.int32] = self.data.warning.number
        self._bad_warnings = tuple(
            int(k)
            for k in (
                mujoco.mjtWarning.mjWARN_BADQPOS,
                mujoco.mjtWarning.mjWARN_BADQVEL,
                mujoco.mjtWarning.mjWARN_BADQACC,
            )
        )
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
        mass = self.robot_mass
        mass = mass if isinstance(mass, float) else mass[env_ids]
        self.buoyancy[env_ids] = self.gcr[env_ids] * mass * GRAVITY
        self._minus_two_spcf.reshape(self.num_envs, 2)[env_ids] = -2.0 * self.spcf[env_ids, None]
        self._lift[self.num_envs :][env_ids] = self.buoyancy[env_ids]

    def set_obstacle_heights(self, env_ids: NDArray[np.int64], heights: FloatArray) -> None:
        """Resize each env's terrain piece in place (compiled at the largest size).

        Obstacle: the box spans z from -OBSTACLE_BURIAL to the height, its top is the
        obstacle. Ramp: `heights` are peak heights, the slope box is turned and moved.
        """
        geom_ids = env_ids + OBSTACLE_GEOM_OFFSET
        if self.terrain == "ramp":  # the slope box of each peak height (ramp_pose)
            h = np.clip(np.asarray(heights, dtype=np.float64), 1e-4, MAX_RAMP_HEIGHT)
            half_len, half_depth, centre, quat = ramp_pose(
                self.obstacle_start_x, self.obstacle_length, h
            )
            self.model.geom_size[geom_ids, 0] = half_len
            self.model.geom_size[geom_ids, 2] = half_depth
            self.model.geom_pos[geom_ids, 0] = centre[:, 0]
            self.model.geom_pos[geom_ids, 2] = centre[:, 1]
            self.model.geom_quat[geom_ids] = quat
            self.obstacle_height[env_ids] = h
            return
        h = np.clip(np.asarray(heights, dtype=np.float64), 1e-4, MAX_OBSTACLE_HEIGHT)
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

    def _init_fast_paths(self) -> None:
        """Index arrays, constants and buffers of `apply_forces` and `leg_points`, made once.

        A small numpy call costs about the same for 64 numbers as for 512, and several times
        more on a strided or broadcast operand, so `apply_forces` gathers the state it reads
        into contiguous blocks (one fancy index each for qpos and qvel), computes on whole
        blocks, and scatters the forces back. Block layout (each block n or 2n long, env
        major, legs left/right): qpos [knee 2n | servo 2n | pitch | neck]; qvel [knee 2n |
        servo 2n | vx | vz | pitch | pitch | neck | neck]; torques [knee 2n | servo 2n];
        balloon force [x | z]. mjData's arrays live as long as `data` (MuJoCo's own resets
        write into them), so the flat views are made once too.
        """
        n = self.num_envs
        env = np.arange(n) * DOF_PER_ROBOT

        def legs(left: int, right: int) -> NDArray[np.int64]:
            ids: NDArray[np.int64] = (env[:, None] + np.array([left, right])).ravel()
            return ids

        knee, servo = legs(5, 8), legs(6, 9)
        self._q_idx = np.concatenate([knee, servo, env + 2, env + 3])
        self._qd_idx = np.concatenate(
            [knee, servo, env, env + 1, env + 2, env + 2, env + 3, env + 3]
        )
        self._frc_idx = np.concatenate([knee, servo])
        balloon = 1 + np.arange(n) * BODIES_PER_ROBOT + BALLOON_BODY
        self._balloon_idx = np.concatenate([balloon * 6, balloon * 6 + 2])  # force x, z
        self._qpos_flat: FloatArray = self.data.qpos
        self._qvel_flat: FloatArray = self.data.qvel
        self._qfrc_flat: FloatArray = self.data.qfrc_applied
        self._xfrc_flat: FloatArray = self.data.xfrc_applied.reshape(-1)
        self._leg_idx = np.concatenate(
            [legs(2, 2), legs(4, 7), knee, legs(0, 0), legs(1, 1)]  # see leg_points
        )
        g = self.body
        self._leg_length: FloatArray = np.repeat([g.femur_length, g.foot_offset], 4 * n)
        if self.legs is not None:  # [femur | femur | foot offset | foot offset], 2n each
            femur = np.repeat(self.legs, 2)
            foot = femur + g.electronics_length
            self._leg_length = np.concatenate([femur, femur, foot, foot])
        self._leg_angle: FloatArray = np.zeros(4 * n)
        self._leg_trig: FloatArray = np.zeros(8 * n)  # sin, cos of the hip, then of the knee
        # Targets [knee | servo]; knee_target and servo_target are (n, 2) views of it.
        self._targets: FloatArray = np.zeros(4 * n)
        self.knee_target: FloatArray = self._targets[: 2 * n].reshape(n, 2)
        self.servo_target: FloatArray = self._targets[2 * n :].reshape(n, 2)
        # Per-element constants (a broadcast operand would cost more than the memory).
        self._kp: FloatArray = np.repeat([CABLE_KP, SERVO_KP], 2 * n)
        self._unit_kp = bool(np.all(self._kp == 1.0))
        self._kd: FloatArray = np.repeat([CABLE_KD, SERVO_KD], 2 * n)
        self._minus_two_spcf: FloatArray = np.repeat(-2.0 * self.spcf, 2)
        # (h, -h): the balloon's z velocity becomes a sum like x's (a - b is a + (-b)).
        self._arm: FloatArray = np.repeat([self._balloon_height, -self._balloon_height], n)
        # Added to the drag (x | z): -0.0 is the exact identity of addition, so x is the drag.
        self._lift: FloatArray = np.concatenate([np.full(n, -0.0), self.buoyancy])
        # Scratch buffers.
        self._err: FloatArray = np.zeros(4 * n)
        self._damp: FloatArray = np.zeros(4 * n)
        self._torque: FloatArray = np.zeros(4 * n)
        self._pull, self._tau = self._err[: 2 * n], self._torque[2 * n :]
        self._spring: FloatArray = np.zeros(2 * n)
        self._tmp: FloatArray = np.zeros(2 * n)
        self._too_fast: NDArray[np.bool_] = np.zeros(2 * n, dtype=bool)
        self._phi: FloatArray = np.zeros(n)
        self._trig: FloatArray = np.zeros(2 * n)
        self._cos, self._sin = self._trig[:n], self._trig[n:]
        self._vel: FloatArray = np.zeros(2 * n)
        self._drag: FloatArray = np.zeros(2 * n)

    def apply_forces(self) -> None:
        """Knee spring + cable, servo PD, buoyancy and drag for the current state.

        Runs before every `mj_step`: about 30 `out=` ufunc calls on contiguous blocks (see
        `_init_fast_paths`). Operation by operation it is the torque laws of
        `pec.backends.ballu.facts` (same operands, same order; a - b written as a + (-b) only
        where IEEE makes the two identical), so the forces equal the plain formulas bit for
        bit (`tests/test_mujoco_physics.py` checks).
        """
        n = self.num_envs
        n2, n4 = 2 * n, 4 * n
        q = self._qpos_flat[self._q_idx]
        qd = self._qvel_flat[self._qd_idx]
        err, damp, spring, tmp = self._err, self._damp, self._spring, self._tmp
        # PD of the cables and the servos: kp (target - q) - kd q'.
        np.subtract(self._targets, q[:n4], out=err)
        if not self._unit_kp:  # x * 1.0 is exactly x: skipped for unit gains
            np.multiply(self._kp, err, out=err)
        np.multiply(self._kd, qd[:n4], out=damp)
        np.subtract(err, damp, out=err)
        # Knee: -2 spcf (q + rest) - d q' + max(0, cable PD); the cable only pulls.
        pull = self._pull
        np.maximum(0.0, pull, out=pull)
        np.add(q[:n2], SPRING_REST, out=spring)
        np.multiply(self._minus_two_spcf, spring, out=spring)
        np.multiply(SPRING_DAMPING, qd[:n2], out=tmp)
        np.subtract(spring, tmp, out=spring)
        np.add(spring, pull, out=pull)
        # Both torques clipped to the limit.
        np.maximum(err, -TORQUE_LIMIT, out=err)
        np.minimum(err, TORQUE_LIMIT, out=self._torque)
        # Servo speed limit: no torque pushing further past the top speed, that is where
        # sign(tau) q' > limit (exactly |q'| > limit and tau q' > 0).
        tau = self._tau
        np.sign(tau, out=tmp)
        np.multiply(tmp, qd[n2:n4], out=tmp)
        np.greater(tmp, SERVO_SPEED_LIMIT, out=self._too_fast)
        np.copyto(tau, 0.0, where=self._too_fast)
        self._qfrc_flat[self._frc_idx] = self._torque
        # Balloon: buoyancy up, quadratic drag on the balloon centre's exact velocity,
        # v = root velocity + omega h (cos phi, -sin phi), phi = pitch + neck.
        phi, trig, v, drag = self._phi, self._trig, self._vel, self._drag
        np.add(q[n4 : n4 + n], q[n4 + n :], out=phi)
        np.cos(phi, out=self._cos)
        np.sin(phi, out=self._sin)
        np.multiply(self._arm, trig, out=trig)
        np.add(qd[n4 + n2 : n4 + 2 * n2], qd[n4 + 2 * n2 :], out=v)  # omega, twice
        np.multiply(v, trig, out=trig)
        np.add(qd[n4 : n4 + n2], trig, out=v)
        np.abs(v, out=drag)
        np.multiply(self._minus_c, drag, out=drag)
        np.multiply(drag, v, out=drag)
        np.add(self._lift, drag, out=drag)
        self._xfrc_flat[self._balloon_idx] = drag

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
        """How often MuJoCo has reset mjData for a bad qpos, qvel or qacc so far."""
        number = self._warning_number
        return sum(int(number[k]) for k in self._bad_warnings)

    # ------------------------------------------------------------------ kinematics
    def leg_points(self) -> tuple[FloatArray, FloatArray]:
        """Knee and foot (x, z) per robot and leg, from the planar chain: (n, 2, 2) each.

        `planar_leg_points` on contiguous gathered blocks (see `_init_fast_paths`), equal
        to it bit for bit; `[:, :, 0]` and `[:, :, 1]` of the results are contiguous.
        """
        n2 = 2 * self.num_envs
        g = self._qpos_flat[self._leg_idx]  # [pitch | hip | knee | root x | root z], 2n each
        angle, trig = self._leg_angle, self._leg_trig
        np.add(g[:n2], g[n2 : 2 * n2], out=angle[:n2])  # hip angle = pitch + hip
        np.add(angle[:n2], g[2 * n2 : 3 * n2], out=angle[n2:])  # + knee
        np.sin(angle[:n2], out=trig[:n2])
        np.cos(angle[:n2], out=trig[n2 : 2 * n2])
        np.sin(angle[n2:], out=trig[2 * n2 : 3 * n2])
        np.cos(angle[n2:], out=trig[3 * n2 :])
        np.multiply(self._leg_length, trig, out=trig)
        knees = np.subtract(g[3 * n2 :], trig[: 2 * n2])  # [x | z]
        feet = np.subtract(knees, trig[2 * n2 :])
        np.subtract(feet[n2:], self.body.foot_radius, out=feet[n2:])  # the sole
        shape = (2, self.num_envs, 2)
        return knees.reshape(shape).transpose(1, 2, 0), feet.reshape(shape).transpose(1, 2, 0)
