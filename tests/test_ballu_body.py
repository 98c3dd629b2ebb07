"""One robot in both backends: BALLU's physical parameters come from `pec.backends.ballu.body`.

The MuJoCo backend's compiled scene and the single-robot MJCF the Isaac Lab backend converts
to USD are compared number by number here (fast); `tests/test_isaaclab_env.py` reads the
same numbers back from the model MuJoCo-Warp actually simulates inside Isaac Lab.
"""

from __future__ import annotations

from dataclasses import replace

import mujoco
import numpy as np
import pytest
from support.ballu_models import robot_numbers

from pec.backends.ballu.body import BODY_NAMES, JOINT_NAMES, BalluBody, single_robot_mjcf
from pec.backends.isaaclab.assets import robot_mjcf
from pec.backends.mujoco.sim import BalluSim


def test_mujoco_scene_robots_are_the_robot_isaac_lab_converts() -> None:
    sim = BalluSim(3)
    single = mujoco.MjModel.from_xml_string(robot_mjcf(0.5))
    assert [single.body(i).name for i in range(1, single.nbody)] == list(BODY_NAMES)
    assert [single.joint(j).name for j in range(single.njnt)] == list(JOINT_NAMES)
    reference = robot_numbers(single)
    for robot in range(3):
        numbers = robot_numbers(sim.model, robot)
        assert numbers.keys() == reference.keys()
        for key, value in reference.items():
            np.testing.assert_array_equal(numbers[key], value, err_msg=key)
    # the numbers are the shared parameters, not defaults that happen to agree
    body = BalluBody()
    assert reference["cone"][0] == mujoco.mjtCone.mjCONE_ELLIPTIC
    assert reference["integrator"][0] == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    by_name = dict(zip(BODY_NAMES, reference["body_mass"], strict=True))
    assert by_name["servo_arm_l"] == body.servo_arm_mass == 1e-3
    assert by_name["root_z_link"] == by_name["root_x_link"] == body.root_link_mass
    assert by_name["balloon"] == pytest.approx(body.balloon_mass, rel=1e-12)
    assert reference["body_inertia"].min() >= body.bound_inertia
    np.testing.assert_array_equal(
        reference["dof_damping"], [0, 0, 0, 0.001, 0.011, 0, 0, 0.011, 0, 0]
    )
    np.testing.assert_array_equal(reference["dof_armature"], [0, 0, 0, 0, 0, 0, 2e-4, 0, 0, 2e-4])
    np.testing.assert_array_equal(reference["foot_friction"], [[0.5, 0.005, 0.0001]] * 2)
    assert sim.robot_mass == pytest.approx(body.buoyant_mass, rel=1e-12)


def test_masses_follow_the_facts_and_derive_from_the_base_parameters() -> None:
    body = BalluBody()
    # BALLU_MODEL.md's masses (densities of the original's generator, thin cylinders)
    facts = {
        "balloon_mass": 0.0954,
        "pelvis_mass": 0.0023,
        "femur_mass": 0.0075,
        "tibia_mass": 0.0069,
        "electronics_mass": 0.0357,
    }
    for name, value in facts.items():
        assert getattr(body, name) == pytest.approx(value, rel=0.02), name
    # a longer leg is heavier in proportion and reaches further; the rest is untouched
    long = replace(body, femur_length=0.6, tibia_length=0.6)
    assert long.femur_mass == pytest.approx(body.femur_mass * 0.6 / 0.48, rel=1e-12)
    assert long.tibia_mass == pytest.approx(body.tibia_mass * 0.6 / 0.443, rel=1e-12)
    assert long.foot_offset == pytest.approx(0.6 + body.electronics_length)
    assert long.buoyant_mass - body.buoyant_mass == pytest.approx(
        2 * (long.femur_mass - body.femur_mass + long.tibia_mass - body.tibia_mass)
    )
    # and the compiled robot follows: the femur's mass and the foot's depth below the hip
    model = mujoco.MjModel.from_xml_string(single_robot_mjcf(long, 0.5))
    femur = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, "femur_l")
    assert model.body_mass[femur] == pytest.approx(long.femur_mass, rel=1e-12)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    foot = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "foot_l")
    assert data.geom_xpos[foot][2] == pytest.approx(-(0.6 + long.foot_offset), abs=1e-9)
