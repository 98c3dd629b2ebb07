"""The BALLU obstacle task's numbers and formulas, written once for every backend.

Every function works on numpy arrays and on torch tensors alike (the MuJoCo backend steps
in numpy, the Isaac Lab backend in torch on its device), so both score the same maths.
The MuJoCo simulator applies the torque laws in its own allocation-free numpy form (it runs
before every `mj_step`); `tests/test_isaaclab_env.py` checks the two agree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# Array arguments are np.ndarray or torch.Tensor (typed Any: the formulas serve both).

# ---------------------------------------------------------------- physics (BALLU_MODEL.md)
GRAVITY = 9.81
KNEE_MAX = 1.745  # knee range [0, 1.745] rad
TORQUE_LIMIT = 0.0848  # N m, servo and knee
SPRING_REST = 0.7854  # the knee spring is preloaded against this rest angle
SPRING_DAMPING = 0.001
CABLE_KP = 1.0
CABLE_KD = 0.08
SERVO_KP = 1.0
SERVO_KD = 0.01
SERVO_SPEED_LIMIT = 7.48  # rad/s
GROUND_FRICTION = 0.5
OBSTACLE_START_X = 0.5  # near face of the obstacle
OBSTACLE_LENGTH = 1.0
# Initial pose: hips 1 deg, knees 27.35 deg, servos 10 deg, root 1.2 m up, zero velocity.
INIT_HIP = math.radians(1.0)
INIT_KNEE = math.radians(27.35)
INIT_SERVO = math.radians(10.0)
INIT_ROOT_HEIGHT = 1.2

# ---------------------------------------------------------------- observations (29 numbers)
# In this order in every backend; names are what each slice holds.
OBSERVATION_LAYOUT: tuple[tuple[str, int], ...] = (
    ("joint_pos", 8),  # root pitch, neck, hip l, knee l, servo l, hip r, knee r, servo r
    ("joint_vel", 10),  # root vx, vz, pitch rate, then the 7 joint velocities (same order)
    ("root_to_obstacle_face", 1),
    ("obstacle_height", 1),
    ("root_from_start", 2),  # x, z relative to the start pose
    ("goal_from_root", 1),  # goal x - root x (planar: y is always 0)
    ("knee_to_obstacle_face", 2),
    ("previous_action", 2),
    ("morphology", 2),  # GCR and spcf normalised to [-1, 1]
)
NUM_OBS = sum(size for _, size in OBSERVATION_LAYOUT)
NUM_ACTIONS = 2
OBS_CLIP = 100.0  # non-finite observations become 0 / +-OBS_CLIP

# ---------------------------------------------------------------- rewards and terminations
GOAL_WEIGHT = 5.0
HEIGHT_WEIGHT = 1.0
VELOCITY_WEIGHT = 3.0
HEIGHT_REWARD_CAP = 1.8
VELOCITY_REWARD_CAP = 0.8
MAX_ROOT_SPEED = 10.0
MAX_ROOT_HEIGHT = 5.0
MAX_FOOT_HEIGHT = 2.5


def _xp(a: Any) -> Any:
    """numpy for arrays and numbers, torch for tensors."""
    if isinstance(a, np.ndarray | float | int | np.floating):
        return np
    import torch

    return torch


def servo_target(actions: Any) -> Any:
    """Raw policy action -> servo angle target, clip(pi a, 0, pi)."""
    return _xp(actions).clip(math.pi * actions, min=0.0, max=math.pi)


def knee_target(servo: Any) -> Any:
    """The cable maps the commanded servo angle onto the knee range."""
    return servo * (KNEE_MAX / math.pi)


def knee_torque(q: Any, qd: Any, target: Any, spcf: Any) -> Any:
    """Spring (pushes the knee straight) + cable (only pulls), clipped to the torque limit.

    tau_spring = -2 spcf (q + 0.7854) - 0.001 qd; tau_pull = max(0, 1.0 (target - q) - 0.08 qd).
    """
    xp = _xp(q)
    spring = -2.0 * spcf * (q + SPRING_REST) - SPRING_DAMPING * qd
    pull = xp.clip(CABLE_KP * (target - q) - CABLE_KD * qd, min=0.0)
    return xp.clip(spring + pull, min=-TORQUE_LIMIT, max=TORQUE_LIMIT)


def servo_torque(q: Any, qd: Any, target: Any) -> Any:
    """Servo PD, clipped; no torque that pushes further past the speed limit."""
    xp = _xp(q)
    tau = xp.clip(SERVO_KP * (target - q) - SERVO_KD * qd, min=-TORQUE_LIMIT, max=TORQUE_LIMIT)
    too_fast = (xp.abs(qd) > SERVO_SPEED_LIMIT) & (tau * qd > 0)
    return xp.where(too_fast, 0.0 * tau, tau)


def buoyancy_force(gcr: Any, robot_mass: float) -> Any:
    """Upward force on the balloon, N."""
    return gcr * robot_mass * GRAVITY


def drag_force(v: Any, coefficient: float) -> Any:
    """Quadratic drag per axis, -C |v| v."""
    return -coefficient * _xp(v).abs(v) * v


def goal_reward(mean_foot_x: Any, goal_x: float, factor: float) -> Any:
    """max(0, 1 - 0.33 |goal - mean foot x|), times the warm-up factor (unweighted)."""
    xp = _xp(mean_foot_x)
    return xp.clip(1.0 - 0.33 * xp.abs(goal_x - mean_foot_x), min=0.0) * factor


def foot_clearance(
    feet_x: Any, feet_z: Any, obstacle_height: Any, obstacle_start_x: float, obstacle_length: float
) -> Any:
    """Lowest sole height, measured from the obstacle top when both feet are over it.

    feet_x / feet_z: (n, 2) foot-sphere centres' x and sole heights (centre z - radius).
    """
    xp = _xp(feet_x)
    lo, hi = obstacle_start_x, obstacle_start_x + obstacle_length
    over = ((feet_x >= lo) & (feet_x <= hi)).all(1)
    low = feet_z.min(1)
    if xp is not np:
        low = low.values
    return low - xp.where(over, obstacle_height, 0.0 * obstacle_height)


def height_reward(z: Any) -> Any:
    """exp(1.73 z) - 1, 0 above the cap (unweighted)."""
    xp = _xp(z)
    return xp.where(
        z > HEIGHT_REWARD_CAP, 0.0 * z, xp.expm1(1.73 * xp.clip(z, max=HEIGHT_REWARD_CAP))
    )


def velocity_reward(vx: Any) -> Any:
    """vx; 0 above the cap; exp(vx) - 1 when moving backwards (unweighted)."""
    xp = _xp(vx)
    backwards = xp.expm1(xp.clip(vx, max=0.0))
    return xp.where(vx > VELOCITY_REWARD_CAP, 0.0 * vx, xp.where(vx < 0, backwards, vx))


def normalised_design(values: Any, value_range: tuple[float, float]) -> Any:
    """Map a design parameter from its range onto [-1, 1] (the morphology observation)."""
    lo, hi = value_range
    return (values - lo) / (hi - lo) * 2 - 1


def planar_leg_points(
    q: Any, femur_length: float, foot_offset: float, foot_radius: float
) -> tuple[Any, Any]:
    """Knee and foot (x, z) per robot and leg from the planar chain: (n, 2, 2) each.

    q: (n, 10) in the order root x, root z (absolute height), root pitch, neck, then per
    leg hip/knee/servo. Foot z is the sole (sphere centre minus its radius).
    """
    xp = _xp(q)
    hip_angle = q[:, 2:3] + q[:, 4::3]
    knee_angle = hip_angle + q[:, 5::3]
    knee_x = q[:, 0:1] - femur_length * xp.sin(hip_angle)
    knee_z = q[:, 1:2] - femur_length * xp.cos(hip_angle)
    foot_x = knee_x - foot_offset * xp.sin(knee_angle)
    foot_z = knee_z - foot_offset * xp.cos(knee_angle) - foot_radius
    return xp.stack([knee_x, knee_z], -1), xp.stack([foot_x, foot_z], -1)
