"""BALLU's physical parameters and its MJCF, written once for every simulator backend.

`BalluBody` holds the base parameters (dimensions, densities, the few masses that are not
derived, joint damping and armature, contact and solver choices); everything derived from
them (link masses from the original's densities, the mass buoyancy carries, the knee-to-foot
distance) is a property, so changing a base parameter (a leg length, say) changes the
derived ones with it. `robot_xml` writes one planar robot as MJCF from a `BalluBody`: the
MuJoCo backend compiles one copy per env into its scene, the Isaac Lab backend converts the
same text to USD. Both therefore simulate the same bodies, masses, inertias, limits,
damping, armature, friction and friction cone (`tests/test_ballu_body.py` reads the numbers
back from both built models).

Where MuJoCo-Warp's float32 needs a heavier or stiffer part than the facts give, the value
here is the heavier one and both backends use it (docs/BALLU_MUJOCO.md, "One robot"):

- servo arms 1e-3 kg (the facts' "tiny arm"; 1e-5 kg read back as 0 kg or made NaNs),
- the planar root as a chain of two 1e-3 kg links (slide x, then slide z, then the pelvis's
  pitch hinge: USD has one joint per body),
- inertias bounded below by 1e-6 kg m^2 (it only touches axes a planar robot never turns
  about, and the servo arms),
- the elliptic friction cone (the pyramidal one made float32 NaNs at box contacts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pec.backends.ballu.facts import KNEE_MAX

# One robot's joints in tree order (= qpos order in both backends): the planar root's slide
# x, slide z and pitch hinge, the neck, then per leg hip / knee / servo.
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
# One robot's bodies in tree order.
BODY_NAMES: tuple[str, ...] = (
    "root_x_link",
    "root_z_link",
    "pelvis",
    "balloon",
    "femur_l",
    "tibia_l",
    "servo_arm_l",
    "femur_r",
    "tibia_r",
    "servo_arm_r",
)
# Bodies the buoyancy does not carry: the x-slide link only moves horizontally.
UNBUOYED_BODIES: tuple[str, ...] = ("root_x_link",)
HALF_PI = 1.5708  # the hip and neck limits, rad


def _cylinder_volume(radius: float, length: float) -> float:
    return math.pi * radius**2 * length


@dataclass(frozen=True)
class BalluBody:
    """Base physical parameters of one BALLU robot (femur 0.480 m / tibia 0.443 m).

    Link masses are derived from the original's parametric generator: thin cylinders of
    radius `link_radius` with the limb, electronics and balloon densities (BALLU_MODEL.md).
    """

    # -- dimensions (m)
    link_radius: float = 0.005
    balloon_radius: float = 0.32
    balloon_length: float = 0.70
    balloon_height: float = 0.38  # balloon centre above the neck
    pelvis_length: float = 0.15
    hip_offset: float = 0.058
    femur_length: float = 0.480
    tibia_length: float = 0.443
    electronics_length: float = 0.06
    foot_radius: float = 0.004
    servo_arm_length: float = 0.02
    servo_arm_radius: float = 0.002
    # -- densities of the original's generator (kg/m^3)
    limb_density: float = 198.85
    electronics_density: float = 7585.7
    balloon_density: float = 0.4236  # "effective": the envelope, not the helium
    # -- masses that are not derived (kg); float32-safe minimums, see the module docstring
    servo_arm_mass: float = 1e-3
    root_link_mass: float = 1e-3
    bound_mass: float = 1e-6
    bound_inertia: float = 1e-6
    # -- joints
    neck_damping: float = 0.001
    hip_damping: float = 0.011  # 0.001 joint damping + 0.01 extra, as listed in the facts
    servo_armature: float = 2e-4  # keeps the servo PD stable at 5 ms
    neck_range: tuple[float, float] = (-HALF_PI, HALF_PI)
    hip_range: tuple[float, float] = (-HALF_PI, HALF_PI)
    knee_range: tuple[float, float] = (0.0, KNEE_MAX)
    # -- contact (sliding friction is the task's `ground_friction`) and solver choices
    torsional_friction: float = 0.005
    rolling_friction: float = 0.0001
    contact_dims: int = 3
    contact_solref: tuple[float, float] = (0.02, 1.0)  # critically damped, no restitution
    contact_solimp: tuple[float, float, float] = (0.9, 0.95, 0.001)
    friction_cone: str = "elliptic"
    integrator: str = "implicitfast"

    # -- derived masses (kg)
    @property
    def pelvis_mass(self) -> float:
        return self.limb_density * _cylinder_volume(self.link_radius, self.pelvis_length)

    @property
    def femur_mass(self) -> float:
        return self.limb_density * _cylinder_volume(self.link_radius, self.femur_length)

    @property
    def tibia_mass(self) -> float:
        return self.limb_density * _cylinder_volume(self.link_radius, self.tibia_length)

    @property
    def electronics_mass(self) -> float:
        volume = _cylinder_volume(self.link_radius, self.electronics_length)
        return self.electronics_density * volume

    @property
    def balloon_mass(self) -> float:
        volume = _cylinder_volume(self.balloon_radius, self.balloon_length)
        return self.balloon_density * volume

    @property
    def leg_mass(self) -> float:
        """One leg: femur, tibia, electronics and servo arm."""
        return self.femur_mass + self.tibia_mass + self.electronics_mass + self.servo_arm_mass

    @property
    def buoyant_mass(self) -> float:
        """Mass the buoyancy carries (GCR x this x g): every body that moves vertically."""
        return self.root_link_mass + self.pelvis_mass + self.balloon_mass + 2 * self.leg_mass

    # -- derived lengths (m)
    @property
    def foot_offset(self) -> float:
        """Distance from the knee to the foot sphere centre, along the tibia."""
        return self.tibia_length + self.electronics_length


def compiler_xml(body: BalluBody) -> str:
    """The `<compiler>` element: inertias from the geoms, bounded below."""
    return (
        f'<compiler angle="radian" inertiafromgeom="true" boundmass="{body.bound_mass}"'
        f' boundinertia="{body.bound_inertia}"/>'
    )


def option_xml(body: BalluBody, timestep: float | None = None) -> str:
    """The `<option>` element: integrator, friction cone, gravity (and the timestep)."""
    dt = "" if timestep is None else f'timestep="{timestep}" '
    return (
        f'<option {dt}integrator="{body.integrator}" cone="{body.friction_cone}"'
        ' gravity="0 0 -9.81"/>'
    )


def default_xml(body: BalluBody, friction: float) -> str:
    """The `<default>` element: every geom's friction and contact softness."""
    solref = " ".join(str(v) for v in body.contact_solref)
    solimp = " ".join(str(v) for v in body.contact_solimp)
    return f"""<default>
    <geom friction="{friction} {body.torsional_friction} {body.rolling_friction}"
          condim="{body.contact_dims}" solref="{solref}" solimp="{solimp}"/>
  </default>"""


def _leg_xml(side: str, y: float, g: BalluBody, sfx: str) -> str:
    knee_lo, knee_hi = g.knee_range
    hip_lo, hip_hi = g.hip_range
    elec_mid = g.tibia_length + g.electronics_length / 2
    r = g.link_radius
    return f"""
          <body name="femur_{side}{sfx}" pos="0 {y:.4f} 0">
            <joint name="hip_{side}{sfx}" type="hinge" axis="0 1 0" range="{hip_lo} {hip_hi}"
                   damping="{g.hip_damping}"/>
            <geom type="cylinder" fromto="0 0 0 0 0 {-g.femur_length}" size="{r}"
                  mass="{g.femur_mass}" contype="0" conaffinity="0"/>
            <body name="tibia_{side}{sfx}" pos="0 0 {-g.femur_length}">
              <joint name="knee_{side}{sfx}" type="hinge" axis="0 1 0"
                     range="{knee_lo} {knee_hi}"/>
              <geom type="cylinder" fromto="0 0 0 0 0 {-g.tibia_length}" size="{r}"
                    mass="{g.tibia_mass}" contype="0" conaffinity="0"/>
              <geom type="cylinder" pos="0 0 {-elec_mid}" size="{r} {g.electronics_length / 2}"
                    mass="{g.electronics_mass}" contype="0" conaffinity="0"/>
              <geom name="foot_{side}{sfx}" type="sphere" pos="0 0 {-g.foot_offset}"
                    size="{g.foot_radius}" mass="0" contype="1" conaffinity="0"/>
              <body name="servo_arm_{side}{sfx}" pos="0 0 {-elec_mid}">
                <joint name="servo_{side}{sfx}" type="hinge" axis="0 1 0"
                       armature="{g.servo_armature}"/>
                <geom type="capsule" fromto="0 0 0 {g.servo_arm_length} 0 0"
                      size="{g.servo_arm_radius}" mass="{g.servo_arm_mass}"
                      contype="0" conaffinity="0"/>
              </body>
            </body>
          </body>"""


def robot_xml(body: BalluBody, *, suffix: str = "", y: float = 0.0) -> str:
    """One planar robot as an MJCF `<body>` tree (names end in `suffix`), pelvis at (0, y, 0).

    Bodies in `BODY_NAMES` order, joints in `JOINT_NAMES` order; only the feet collide
    (contype 1, conaffinity 0: they touch the ground and obstacles, nothing else). The
    root links carry explicit small inertias (they have no geoms).
    """
    g, sfx = body, suffix
    bi = g.bound_inertia
    link = f'<inertial pos="0 0 0" mass="{g.root_link_mass}" diaginertia="{bi} {bi} {bi}"/>'
    half_pelvis = g.pelvis_length / 2
    neck_lo, neck_hi = g.neck_range
    return f"""
    <body name="root_x_link{sfx}" pos="0 {y:.4f} 0">
      <joint name="root_x{sfx}" type="slide" axis="1 0 0"/>
      {link}
      <body name="root_z_link{sfx}">
        <joint name="root_z{sfx}" type="slide" axis="0 0 1"/>
        {link}
        <body name="pelvis{sfx}">
          <joint name="root_pitch{sfx}" type="hinge" axis="0 1 0"/>
          <geom type="cylinder" fromto="0 {-half_pelvis} 0 0 {half_pelvis} 0"
                size="{g.link_radius}" mass="{g.pelvis_mass}" contype="0" conaffinity="0"/>
          <body name="balloon{sfx}">
            <joint name="neck{sfx}" type="hinge" axis="0 1 0" range="{neck_lo} {neck_hi}"
                   damping="{g.neck_damping}"/>
            <geom type="cylinder" pos="0 0 {g.balloon_height}"
                  size="{g.balloon_radius} {g.balloon_length / 2}" mass="{g.balloon_mass}"
                  contype="0" conaffinity="0" rgba="0.9 0.9 1 0.4"/>
          </body>{_leg_xml("l", g.hip_offset, g, sfx)}{_leg_xml("r", -g.hip_offset, g, sfx)}
        </body>
      </body>
    </body>"""


def single_robot_mjcf(body: BalluBody, friction: float) -> str:
    """A whole MJCF file holding one robot at the origin (Isaac Lab converts it to USD).

    The spawn pose sets the height; the world (ground, obstacles) is separate there.
    """
    return f"""<mujoco model="ballu">
  {compiler_xml(body)}
  {option_xml(body)}
  {default_xml(body, friction)}
  <worldbody>{robot_xml(body)}
  </worldbody>
</mujoco>
"""
