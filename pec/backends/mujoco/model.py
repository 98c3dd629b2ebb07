"""The BALLU MJCF scene: one `pec.backends.ballu.body.robot_xml` per env, obstacles, ground.

One scene holds `num_envs` planar robots (the robot the Isaac Lab backend converts to USD), each in its own y-lane with its own obstacle, so
a single `mj_step` advances every environment. The layout is fixed so that the per-robot
state is a strided *view* of mjData (no gathers in the hot loop):

- qpos/qvel/qfrc_applied: ``DOF_PER_ROBOT`` consecutive 1-dof joints per robot, in
  ``JOINT_NAMES`` order (root slides x and z, root pitch, neck, then per leg hip/knee/servo).
- bodies: world, then ``BODIES_PER_ROBOT`` consecutive bodies per robot (``BODY_NAMES``).
- geoms: the ground plane, one obstacle box per environment, then the robots' geoms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import mujoco
import numpy as np
from numpy.typing import NDArray

from pec.backends.ballu.body import BODY_NAMES as BODY_NAMES
from pec.backends.ballu.body import JOINT_NAMES as JOINT_NAMES
from pec.backends.ballu.body import (
    BalluBody,
    compiler_xml,
    default_xml,
    option_xml,
    robot_xml,
)
from pec.backends.ballu.facts import INIT_HIP as INIT_HIP
from pec.backends.ballu.facts import INIT_KNEE as INIT_KNEE
from pec.backends.ballu.facts import INIT_SERVO as INIT_SERVO
from pec.backends.ballu.terrain import RAMP, ramp_box

DOF_PER_ROBOT = len(JOINT_NAMES)
BODIES_PER_ROBOT = len(BODY_NAMES)
PELVIS_BODY = BODY_NAMES.index("pelvis")
BALLOON_BODY = BODY_NAMES.index("balloon")
# Index helpers into one robot's joint block.
Q_X, Q_Z, Q_PITCH, Q_NECK = 0, 1, 2, 3
Q_HIPS = (4, 7)
Q_KNEES = (5, 8)
Q_SERVOS = (6, 9)
# Ground plane first, then one obstacle per environment.
OBSTACLE_GEOM_OFFSET = 1


# The biggest obstacle any level needs (level 74): compiled at this size so that the
# bounding volumes MuJoCo precomputes stay conservative when a reset shrinks the box.
MAX_OBSTACLE_HEIGHT = 0.001 + 0.010 * 74
# Obstacle boxes reach this far *below* the ground. A box resting on the ground has its
# bottom face within a foot radius of a foot that pushes into its side, and MuJoCo's
# sphere-box contact then pushes the foot out through the nearest face -- the bottom --
# trapping it inside the box. Buried boxes only expose their side and top faces.
OBSTACLE_BURIAL = 0.05
# The tallest ramp (level 74), compiled like the tallest obstacle, and the ramp plank's
# thickness (perpendicular to the slope; its near end is buried by this much).
MAX_RAMP_HEIGHT = RAMP.max_height
RAMP_THICKNESS = 0.05


def with_leg(body: BalluBody, leg: float) -> BalluBody:
    """The robot with femur = tibia = `leg` m (the original's 3-D design axis).

    `BalluBody` derives the link masses from the original's densities (rho pi r^2 L for a
    femur or tibia of length L), and MuJoCo the inertias from the cylinders; everything
    else (balloon, pelvis, electronics, servo arms) is unchanged.
    """
    return replace(body, femur_length=float(leg), tibia_length=float(leg))


def build_scene_xml(
    num_envs: int,
    timestep: float,
    lane_spacing: float,
    obstacle_start_x: float,
    obstacle_length: float,
    obstacle_width: float,
    friction: float,
    body: BalluBody | None = None,
    terrain: str = "obstacle",
    legs: Sequence[float] | None = None,
) -> str:
    """MJCF text of the whole scene; robot i (names suffixed `_i`) lives at y = i x lane_spacing.

    Every robot is `pec.backends.ballu.body.robot_xml`, the robot the Isaac Lab backend
    converts to USD, with the same compiler, option and default elements. With `legs`,
    robot i has femur = tibia = legs[i] (`with_leg`). Each env's terrain piece is geom
    `obstacle_i`: the obstacle box, or for `terrain="ramp"` a box turned about y whose top
    face is the ramp's slope (`ramp_pose`), compiled at the top level's size and resized
    per env at reset.
    """
    g = body or BalluBody()
    if terrain == "ramp":
        obstacles = _ramp_geoms(
            num_envs, lane_spacing, obstacle_start_x, obstacle_length, obstacle_width
        )
    else:
        half_h = (MAX_OBSTACLE_HEIGHT + OBSTACLE_BURIAL) / 2
        centre_z = (MAX_OBSTACLE_HEIGHT - OBSTACLE_BURIAL) / 2
        obstacles = "".join(
            f"""
    <geom name="obstacle_{i}" type="box"
          pos="{obstacle_start_x + obstacle_length / 2} {i * lane_spacing:.4f} {centre_z}"
          size="{obstacle_length / 2} {obstacle_width / 2} {half_h}"
          contype="0" conaffinity="1" rgba="0.6 0.4 0.2 1"/>"""
            for i in range(num_envs)
        )
    bodies = [g] * num_envs if legs is None else [with_leg(g, leg) for leg in legs]
    robots = "".join(
        robot_xml(bodies[i], suffix=f"_{i}", y=i * lane_spacing) for i in range(num_envs)
    )
    extent = max(10.0, num_envs * lane_spacing)
    return f"""<mujoco model="ballu_{num_envs}">
  {compiler_xml(g)}
  {option_xml(g, timestep)}
  {default_xml(g, friction)}
  <statistic extent="{extent}" center="1 {num_envs * lane_spacing / 2} 0.5"/>
  <worldbody>
    <geom name="ground" type="plane" size="{extent} {extent} 0.1" contype="0" conaffinity="1"/>
    {obstacles}
    {robots}
  </worldbody>
</mujoco>"""


def ramp_pose(
    start_x: float, length: float, heights: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Ramp boxes for peak heights: half length, half depth, centre (x, z), quaternion."""
    half_len, half_depth, centre, theta = ramp_box(start_x, length, heights, RAMP_THICKNESS)
    # MuJoCo turns x towards -z for a positive angle about y: the slope needs -theta.
    quat = np.stack(
        [np.cos(-theta / 2), np.zeros_like(theta), np.sin(-theta / 2), np.zeros_like(theta)], -1
    )
    return half_len, half_depth, centre, quat


def _ramp_geoms(
    num_envs: int, lane_spacing: float, start_x: float, length: float, width: float
) -> str:
    half_len, half_depth, centre, quat = ramp_pose(start_x, length, np.array([MAX_RAMP_HEIGHT]))
    q = " ".join(f"{v:.17g}" for v in quat[0])
    return "".join(
        f"""
    <geom name="obstacle_{i}" type="box"
          pos="{centre[0, 0]:.17g} {i * lane_spacing:.4f} {centre[0, 1]:.17g}" quat="{q}"
          size="{half_len[0]:.17g} {width / 2} {half_depth[0]:.17g}"
          contype="0" conaffinity="1" rgba="0.5 0.5 0.5 1"/>"""
        for i in range(num_envs)
    )


def build_model(
    num_envs: int,
    timestep: float,
    lane_spacing: float,
    obstacle_start_x: float,
    obstacle_length: float,
    obstacle_width: float,
    friction: float,
    body: BalluBody | None = None,
    terrain: str = "obstacle",
    legs: Sequence[float] | None = None,
) -> mujoco.MjModel:
    """Compile the scene and check the strided layout the simulator relies on."""
    xml = build_scene_xml(
        num_envs,
        timestep,
        lane_spacing,
        obstacle_start_x,
        obstacle_length,
        obstacle_width,
        friction,
        body,
        terrain,
        legs,
    )
    model = mujoco.MjModel.from_xml_string(xml)
    if model.nq != num_envs * DOF_PER_ROBOT or model.nv != num_envs * DOF_PER_ROBOT:
        raise RuntimeError("BALLU scene layout broken: every robot must own exactly 10 dofs")
    if model.nbody != 1 + num_envs * BODIES_PER_ROBOT:
        raise RuntimeError(
            f"BALLU scene layout broken: every robot must own exactly {BODIES_PER_ROBOT} bodies"
        )
    return model
