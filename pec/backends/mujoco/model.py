"""The BALLU MJCF scene, built in code from the physical facts in BALLU_MODEL.md.

One scene holds `num_envs` planar robots, each in its own y-lane with its own obstacle, so
a single `mj_step` advances every environment. The layout is fixed so that the per-robot
state is a strided *view* of mjData (no gathers in the hot loop):

- qpos/qvel/qfrc_applied: ``DOF_PER_ROBOT`` consecutive 1-dof joints per robot, in
  ``JOINT_NAMES`` order (root slides x and z, root pitch, neck, then per leg hip/knee/servo).
- bodies: world, then ``BODIES_PER_ROBOT`` consecutive bodies per robot (``BODY_NAMES``).
- geoms: the ground plane, one obstacle box per environment, then the robots' geoms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import mujoco
import numpy as np
from numpy.typing import NDArray

from pec.backends.ballu.facts import INIT_HIP as INIT_HIP
from pec.backends.ballu.facts import INIT_KNEE as INIT_KNEE
from pec.backends.ballu.facts import INIT_SERVO as INIT_SERVO
from pec.backends.ballu.terrain import RAMP, ramp_box

JOINT_NAMES: tuple[str, ...] = (
    "root_x",
    "root_z",
    "root_pitch",
    "neck",
    "hip_l",
    "knee_l",
    "servo_l",
    "hip_r",
    "knee_r",
    "servo_r",
)
DOF_PER_ROBOT = len(JOINT_NAMES)
BODY_NAMES: tuple[str, ...] = (
    "pelvis",
    "balloon",
    "femur_l",
    "tibia_l",
    "servo_arm_l",
    "femur_r",
    "tibia_r",
    "servo_arm_r",
)
BODIES_PER_ROBOT = len(BODY_NAMES)
BALLOON_BODY = BODY_NAMES.index("balloon")
TIBIA_BODIES = (BODY_NAMES.index("tibia_l"), BODY_NAMES.index("tibia_r"))
# Index helpers into one robot's joint block.
Q_X, Q_Z, Q_PITCH, Q_NECK = 0, 1, 2, 3
Q_HIPS = (4, 7)
Q_KNEES = (5, 8)
Q_SERVOS = (6, 9)
# Ground plane first, then one obstacle per environment.
OBSTACLE_GEOM_OFFSET = 1


@dataclass(frozen=True)
class BalluGeometry:
    """Dimensions and masses of one robot (femur 0.480 m / tibia 0.443 m morphology)."""

    link_radius: float = 0.005
    balloon_radius: float = 0.32
    balloon_length: float = 0.70
    balloon_height: float = 0.38  # balloon centre above the neck
    balloon_mass: float = 0.0954
    pelvis_length: float = 0.15
    pelvis_mass: float = 0.0023
    hip_offset: float = 0.058
    femur_length: float = 0.480
    femur_mass: float = 0.0075
    tibia_length: float = 0.443
    tibia_mass: float = 0.0069
    electronics_length: float = 0.06
    electronics_mass: float = 0.0357
    foot_radius: float = 0.004
    servo_arm_length: float = 0.02
    servo_arm_mass: float = 1e-5
    servo_armature: float = 2e-4
    neck_damping: float = 0.001
    hip_damping: float = 0.011  # 0.001 joint damping + 0.01 extra, as listed in the facts
    knee_range: tuple[float, float] = (0.0, 1.745)

    @property
    def foot_offset(self) -> float:
        """Distance from the knee to the foot sphere centre, along the tibia."""
        return self.tibia_length + self.electronics_length

    @property
    def total_mass(self) -> float:
        """Mass the buoyancy compensates (GCR x m_total x g)."""
        legs = 2 * (self.femur_mass + self.tibia_mass + self.electronics_mass + self.servo_arm_mass)
        return self.balloon_mass + self.pelvis_mass + legs


LIMB_DENSITY = 198.85  # kg/m^3 of the original's generator (femur, tibia, pelvis cylinders)


def with_leg(geometry: BalluGeometry, leg: float) -> BalluGeometry:
    """The robot with femur = tibia = `leg` m, masses by the original's morphology rule.

    The original's generator makes every link a cylinder of its material's density, so a
    femur or tibia of length L weighs rho pi r^2 L (inertias follow from the cylinder, as
    MuJoCo computes them from the geom); everything else (balloon, pelvis, electronics,
    servo arms) is unchanged.
    """
    from dataclasses import replace

    mass = LIMB_DENSITY * math.pi * geometry.link_radius**2 * float(leg)
    return replace(
        geometry, femur_length=float(leg), tibia_length=float(leg), femur_mass=mass, tibia_mass=mass
    )


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


def _leg_xml(side: str, y: float, g: BalluGeometry) -> str:
    knee_lo, knee_hi = g.knee_range
    elec_mid = g.tibia_length + g.electronics_length / 2
    foot_z = -g.foot_offset
    r = g.link_radius
    return f"""
      <body name="femur_{side}" pos="0 {y:.4f} 0">
        <joint name="hip_{side}" type="hinge" axis="0 1 0" range="-1.5708 1.5708"
               damping="{g.hip_damping}"/>
        <geom type="cylinder" fromto="0 0 0 0 0 {-g.femur_length}" size="{r}"
              mass="{g.femur_mass}" contype="0" conaffinity="0"/>
        <body name="tibia_{side}" pos="0 0 {-g.femur_length}">
          <joint name="knee_{side}" type="hinge" axis="0 1 0"
                 range="{knee_lo} {knee_hi}"/>
          <geom type="cylinder" fromto="0 0 0 0 0 {-g.tibia_length}" size="{r}"
                mass="{g.tibia_mass}" contype="0" conaffinity="0"/>
          <geom type="cylinder" pos="0 0 {-elec_mid}" size="{r} {g.electronics_length / 2}"
                mass="{g.electronics_mass}" contype="0" conaffinity="0"/>
          <geom name="foot_{side}" type="sphere" pos="0 0 {foot_z}" size="{g.foot_radius}"
                mass="0" contype="1" conaffinity="0" condim="3"/>
          <body name="servo_arm_{side}" pos="0 0 {-elec_mid}">
            <joint name="servo_{side}" type="hinge" axis="0 1 0"
                   armature="{g.servo_armature}"/>
            <geom type="capsule" fromto="0 0 0 {g.servo_arm_length} 0 0" size="0.002"
                  mass="{g.servo_arm_mass}" contype="0" conaffinity="0"/>
          </body>
        </body>
      </body>"""


def _robot_xml(i: int, lane_y: float, g: BalluGeometry) -> str:
    half_pelvis = g.pelvis_length / 2
    return f"""
    <body name="pelvis_{i}" pos="0 {lane_y:.4f} 0">
      <joint name="root_x_{i}" type="slide" axis="1 0 0"/>
      <joint name="root_z_{i}" type="slide" axis="0 0 1"/>
      <joint name="root_pitch_{i}" type="hinge" axis="0 1 0"/>
      <geom type="cylinder" fromto="0 {-half_pelvis} 0 0 {half_pelvis} 0"
            size="{g.link_radius}" mass="{g.pelvis_mass}" contype="0" conaffinity="0"/>
      <body name="balloon_{i}" pos="0 0 0">
        <joint name="neck_{i}" type="hinge" axis="0 1 0" range="-1.5708 1.5708"
               damping="{g.neck_damping}"/>
        <geom type="cylinder" pos="0 0 {g.balloon_height}"
              size="{g.balloon_radius} {g.balloon_length / 2}" mass="{g.balloon_mass}"
              contype="0" conaffinity="0" rgba="0.9 0.9 1 0.4"/>
      </body>
      {_leg_xml("l", g.hip_offset, g)}
      {_leg_xml("r", -g.hip_offset, g)}
    </body>"""


def build_scene_xml(
    num_envs: int,
    timestep: float,
    lane_spacing: float,
    obstacle_start_x: float,
    obstacle_length: float,
    obstacle_width: float,
    friction: float,
    geometry: BalluGeometry | None = None,
    terrain: str = "obstacle",
    legs: Sequence[float] | None = None,
) -> str:
    """MJCF text of the whole scene; robot i lives at y = i x lane_spacing.

    Each env's terrain piece is geom `obstacle_i`: the obstacle box, or for `terrain="ramp"`
    a box turned about y whose top face is the ramp's slope (`terrain.ramp_box`), compiled
    at the top level's size and resized per env at reset.
    """
    g = geometry or BalluGeometry()
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
    robots = "".join(_robot_xml(i, i * lane_spacing, bodies[i]) for i in range(num_envs))
    extent = max(10.0, num_envs * lane_spacing)
    # Body/joint names carry the env index, but the leg helper reuses names: rename below.
    xml = f"""<mujoco model="ballu_{num_envs}">
  <compiler angle="radian" inertiafromgeom="true" boundmass="1e-6" boundinertia="1e-10"/>
  <option timestep="{timestep}" integrator="implicitfast" gravity="0 0 -9.81"/>
  <default>
    <geom friction="{friction} 0.005 0.0001" solref="0.02 1" solimp="0.9 0.95 0.001"/>
  </default>
  <statistic extent="{extent}" center="1 {num_envs * lane_spacing / 2} 0.5"/>
  <worldbody>
    <geom name="ground" type="plane" size="{extent} {extent} 0.1" contype="0" conaffinity="1"/>
    {obstacles}
    {robots}
  </worldbody>
</mujoco>"""
    return _uniquify_names(xml, num_envs)


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


def _uniquify_names(xml: str, num_envs: int) -> str:
    """Give the per-leg names an env suffix (the leg template does not know its env)."""
    out: list[str] = []
    env = -1
    for line in xml.splitlines():
        if '<body name="pelvis_' in line:
            env += 1
        if env >= 0:
            for stem in ("femur", "tibia", "servo_arm", "hip", "knee", "servo", "foot"):
                for side in ("l", "r"):
                    line = line.replace(f'name="{stem}_{side}"', f'name="{stem}_{side}_{env}"')
        out.append(line)
    assert env == num_envs - 1
    return "\n".join(out)


def build_model(
    num_envs: int,
    timestep: float,
    lane_spacing: float,
    obstacle_start_x: float,
    obstacle_length: float,
    obstacle_width: float,
    friction: float,
    geometry: BalluGeometry | None = None,
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
        geometry,
        terrain,
        legs,
    )
    model = mujoco.MjModel.from_xml_string(xml)
    if model.nq != num_envs * DOF_PER_ROBOT or model.nv != num_envs * DOF_PER_ROBOT:
        raise RuntimeError("BALLU scene layout broken: every robot must own exactly 10 dofs")
    if model.nbody != 1 + num_envs * BODIES_PER_ROBOT:
        raise RuntimeError("BALLU scene layout broken: every robot must own exactly 8 bodies")
    return model


def build_robot_xml(
    geometry: BalluGeometry | None = None,
    *,
    root_link_mass: float = 1e-3,
    servo_arm_mass: float = 1e-3,
    bound_inertia: float = 1e-6,
    friction: float = 0.5,
) -> str:
    """MJCF of ONE planar robot for conversion to USD (the Isaac Lab backend's asset).

    Same bodies, joints and limits as the scene above, with what a USD articulation on
    MuJoCo-Warp (float32) needs: USD has one joint per body, so the planar root's slide x
    and slide z get their own small links (`root_x_link`, `root_z_link`) before the pelvis
    (hinge pitch); those links and the servo arms weigh `root_link_mass`/`servo_arm_mass`
    (1e-3 kg: lighter ones read back as 0 kg or made float32 NaNs) and inertias are bounded
    below by `bound_inertia`. The pelvis sits at the origin: the spawn pose sets its height.
    """
    from dataclasses import replace

    g = replace(geometry or BalluGeometry(), servo_arm_mass=servo_arm_mass)
    half_pelvis = g.pelvis_length / 2
    inertia = f'<inertial pos="0 0 0" mass="{root_link_mass}" diaginertia="{bound_inertia} {bound_inertia} {bound_inertia}"/>'
    return f"""<mujoco model="ballu">
  <compiler angle="radian" inertiafromgeom="true" boundmass="1e-6" boundinertia="{bound_inertia}"/>
  <option integrator="implicitfast" gravity="0 0 -9.81"/>
  <default>
    <geom friction="{friction} 0.005 0.0001"/>
  </default>
  <worldbody>
    <body name="root_x_link">
      <joint name="root_x" type="slide" axis="1 0 0"/>
      {inertia}
      <body name="root_z_link">
        <joint name="root_z" type="slide" axis="0 0 1"/>
        {inertia}
        <body name="pelvis">
          <joint name="root_pitch" type="hinge" axis="0 1 0"/>
          <geom type="cylinder" fromto="0 {-half_pelvis} 0 0 {half_pelvis} 0"
                size="{g.link_radius}" mass="{g.pelvis_mass}" contype="0" conaffinity="0"/>
          <body name="balloon" pos="0 0 0">
            <joint name="neck" type="hinge" axis="0 1 0" range="-1.5708 1.5708"
                   damping="{g.neck_damping}"/>
            <geom type="cylinder" pos="0 0 {g.balloon_height}"
                  size="{g.balloon_radius} {g.balloon_length / 2}" mass="{g.balloon_mass}"
                  contype="0" conaffinity="0"/>
          </body>
          {_leg_xml("l", g.hip_offset, g)}
          {_leg_xml("r", -g.hip_offset, g)}
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>
"""
