"""Physics of the embedded BALLU model: buoyancy, knee spring/cable, lanes."""

from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest

from pec.backends.ballu import facts
from pec.backends.mujoco.model import (
    BALLOON_BODY,
    BODIES_PER_ROBOT,
    BODY_NAMES,
    INIT_KNEE,
    INIT_SERVO,
)
from pec.backends.mujoco.sim import BalluSim


def _sim(gcr: list[float], spcf: list[float], drag: float = 0.4) -> BalluSim:
    n = len(gcr)
    sim = BalluSim(n, drag_coefficient=drag)
    ids = np.arange(n)
    sim.set_design(ids, np.array(gcr), np.array(spcf))
    sim.set_obstacle_heights(ids, np.full(n, 0.001))
    sim.set_actions(np.zeros((n, 2)))
    return sim


def test_robot_mass_matches_the_facts() -> None:
    sim = _sim([0.8], [0.005])
    body = sim.body
    assert sim.robot_mass == pytest.approx(body.buoyant_mass, rel=1e-12)
    # the facts' 0.198 kg, plus the float32-safe parts both backends share (2 servo arms of
    # 1e-3 kg instead of "tiny", the 1e-3 kg z-slide link of the planar root)
    extra = 2 * body.servo_arm_mass + body.root_link_mass
    assert sim.robot_mass - extra == pytest.approx(0.198, abs=0.001)


def test_buoyancy_force_is_gcr_times_weight() -> None:
    sim = _sim([0.75, 0.89], [0.005, 0.005])
    sim.apply_forces()  # at rest: drag is zero, so z force is pure buoyancy
    expected = np.array([0.75, 0.89]) * sim.robot_mass * 9.81
    np.testing.assert_allclose(sim.balloon_frc[:, 2], expected, rtol=1e-12)
    assert sim.balloon_frc[1, 2] == pytest.approx(1.7554, abs=0.002)  # 0.89 x 0.2011 x 9.81


def test_higher_gcr_falls_more_slowly() -> None:
    sim = _sim([0.75, 0.89], [0.005, 0.005])
    z0 = sim.qpos[:, 1].copy()
    sim.step(40)  # 0.2 s of free fall: feet are still above the ground
    drop = z0 - sim.qpos[:, 1]
    assert drop[0] > 0 and drop[1] > 0
    assert drop[1] < drop[0] * 0.6


def test_free_fall_of_centre_of_mass_follows_net_weight() -> None:
    # No drag and no contact: the robot's centre of mass accelerates at -(1 - GCR) g.
    gcr = np.array([0.75, 0.89])
    sim = _sim(gcr.tolist(), [0.005, 0.005], drag=0.0)
    # the z-slide link's subtree: every body buoyancy carries (the x-slide link stays level)
    pelvis = 1 + np.arange(2) * BODIES_PER_ROBOT + BODY_NAMES.index("root_z_link")
    mujoco.mj_forward(sim.model, sim.data)
    com0 = sim.data.subtree_com[pelvis, 2].copy()
    sim.step(30)
    mujoco.mj_forward(sim.model, sim.data)
    t = 30 * sim.model.opt.timestep
    expected = 0.5 * (1 - gcr) * 9.81 * t**2
    np.testing.assert_allclose(com0 - sim.data.subtree_com[pelvis, 2], expected, rtol=0.03)


def test_knee_torque_law_hand_computed() -> None:
    sim = _sim([0.8, 0.8], [0.010, 0.001])
    sim.apply_forces()
    # Initial pose: knee 27.35 deg at rest, servo target 10 deg -> cable slack.
    spring = -2 * np.array([0.010, 0.001]) * (INIT_KNEE + 0.7854)
    np.testing.assert_allclose(sim.qfrc[:, 5], spring, rtol=1e-9)
    np.testing.assert_allclose(sim.qfrc[:, 8], spring, rtol=1e-9)
    assert sim.qfrc[0, 5] == pytest.approx(-0.025254, abs=1e-5)
    # Full pull: target 1.745 rad, the cable saturates at the torque limit.
    sim.set_actions(np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert sim.knee_target[0, 0] == pytest.approx(1.745)
    sim.apply_forces()
    np.testing.assert_allclose(sim.qfrc[:, 5], 0.0848)
    # Cable only pulls: a target below the knee angle leaves just the spring.
    np.testing.assert_allclose(sim.qfrc[:, 8], spring, rtol=1e-9)


def test_servo_pd_and_action_mapping() -> None:
    sim = _sim([0.8], [0.005])
    sim.set_actions(np.array([[0.5, -1.0]]))
    assert sim.servo_target[0, 0] == pytest.approx(math.pi / 2)
    assert sim.servo_target[0, 1] == 0.0  # clipped to [0, pi]
    assert sim.knee_target[0, 0] == pytest.approx(1.745 / 2)
    sim.apply_forces()
    assert sim.qfrc[0, 6] == pytest.approx(min(0.0848, math.pi / 2 - INIT_SERVO))
    assert sim.qfrc[0, 9] == pytest.approx(max(-0.0848, -INIT_SERVO))  # clipped: -0.1745


def test_stiffer_spring_extends_the_knee_faster() -> None:
    sim = _sim([0.8, 0.8], [0.010, 0.001])
    sim.step(10)  # 50 ms, legs in the air
    knees = sim.qpos[:, 5]
    assert knees[0] < knees[1] - 0.01
    assert knees[1] < INIT_KNEE


def test_robots_only_touch_their_own_lane() -> None:
    n = 6
    sim = _sim([0.75, 0.8, 0.85, 0.89, 0.8, 0.8], [0.001, 0.004, 0.01, 0.005, 0.002, 0.008])
    sim.set_obstacle_heights(np.arange(n), np.full(n, 0.2))
    rng = np.random.default_rng(3)
    lanes = np.arange(n) * 1.0
    seen = 0
    for _ in range(60):
        sim.set_actions(rng.uniform(-0.2, 1.2, size=(n, 2)))
        sim.step(10)
        for c in sim.data.contact[: sim.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            bodies = [int(sim.model.geom_bodyid[g]) for g in (g1, g2)]
            robot = [(b - 1) // BODIES_PER_ROBOT for b in bodies if b > 0]
            assert len(robot) == 1, "robot parts never touch each other"
            other = g1 if bodies[0] == 0 else g2
            if other != 0:  # an obstacle: must be this robot's own
                assert other - 1 == robot[0]
            seen += 1
    assert seen > 0
    np.testing.assert_allclose(sim.data.xpos[1 + np.arange(n) * BODIES_PER_ROBOT, 1], lanes)


def test_a_foot_pushed_into_the_obstacle_face_is_pushed_back_out() -> None:
    # Regression: a box resting on the ground pulled such a foot *into* the box (its bottom
    # face was the nearest), trapping it; the buried box pushes it back out of the face.
    sim = _sim([0.8], [0.005])
    sim.set_obstacle_heights(np.arange(1), np.array([0.011]))
    sim.qpos[0, 4::3] = 0.0  # straight legs, hips vertical
    sim.qpos[0, 5::3] = 0.0
    _, feet = sim.leg_points()
    sim.qpos[0, 0] += 0.507 - feet[0, 0, 0]  # foot centre 7 mm inside the face at x = 0.5
    sim.qpos[0, 1] -= feet[0, 0, 1] + 0.0005  # sole on the ground
    sim.step(40)
    _, feet = sim.leg_points()
    assert np.all(feet[0, :, 0] < 0.5 - 0.004 + 1e-3)  # back outside (sphere radius 4 mm)
    assert np.all(feet[0, :, 1] > -0.002)


def _reference_forces(sim: BalluSim) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The force laws written plainly from `facts`: knee/servo torques, balloon (fx, fz)."""
    q, qd = sim.qpos, sim.qvel
    knee = facts.knee_torque(q[:, 5::3], qd[:, 5::3], sim.knee_target, sim.spcf[:, None])
    servo = facts.servo_torque(q[:, 6::3], qd[:, 6::3], sim.servo_target)
    phi, omega, h = q[:, 2] + q[:, 3], qd[:, 2] + qd[:, 3], sim.body.balloon_height
    vx = qd[:, 0] + omega * (h * np.cos(phi))  # balloon centre = neck + h (sin phi, cos phi)
    vz = qd[:, 1] - omega * (h * np.sin(phi))
    c = sim.drag_coefficient
    fx = facts.drag_force(vx, c)
    fz = facts.buoyancy_force(sim.gcr, sim.robot_mass) + facts.drag_force(vz, c)
    return knee, servo, np.stack([fx, fz], 1)


def test_applied_forces_and_trajectory_equal_the_plain_force_laws() -> None:
    # apply_forces is a fused, allocation-free form of the laws; it must not change physics:
    # equal forces every physics step and bit-identical states next to a scene driven by
    # the plain formulas, on random designs, obstacles and actions (with contacts).
    n, rng = 12, np.random.default_rng(7)
    gcr, spcf = rng.uniform(0.72, 0.92, n), rng.uniform(0.0005, 0.012, n)
    heights = rng.uniform(0.0, 0.25, n)
    sims = [_sim(gcr.tolist(), spcf.tolist()) for _ in range(2)]
    fused, ref = sims
    for s in sims:
        s.set_obstacle_heights(np.arange(n), heights)
    pulled = over_speed = clipped = contacts = 0
    for step in range(400):
        if step % 10 == 0:
            actions = rng.uniform(-0.3, 1.3, size=(n, 2))
            g = fused.body
            plain = facts.planar_leg_points(
                fused.qpos, g.femur_length, g.foot_offset, g.foot_radius
            )
            for fast, slow in zip(fused.leg_points(), plain, strict=True):
                assert np.array_equal(fast, slow)
            for s in sims:
                s.set_actions(actions)
        if step == 200:  # partial reset, as at episode ends
            for s in sims:
                s.reset(np.array([1, 4, 9]))
        fused.apply_forces()
        knee, servo, balloon = _reference_forces(ref)
        assert np.array_equal(fused.qfrc[:, 5::3], knee)
        assert np.array_equal(fused.qfrc[:, 6::3], servo)
        assert np.array_equal(fused.balloon_frc[:, [0, 2]], balloon)
        ref.qfrc[:, 5::3], ref.qfrc[:, 6::3], ref.balloon_frc[:, [0, 2]] = knee, servo, balloon
        pulled += int((ref.knee_target > ref.qpos[:, 5::3]).sum())
        over_speed += int((np.abs(ref.qvel[:, 6::3]) > facts.SERVO_SPEED_LIMIT).sum())
        clipped += int((np.abs(servo) == facts.TORQUE_LIMIT).sum())
        for s in sims:
            mujoco.mj_step(s.model, s.data)
        contacts += ref.data.ncon
        assert fused.data.qpos.tobytes() == ref.data.qpos.tobytes(), step
        assert fused.data.qvel.tobytes() == ref.data.qvel.tobytes(), step
    assert min(pulled, over_speed, clipped, contacts) > 0  # every branch was exercised


def test_forces_still_reach_mjdata_after_mujoco_resets_it() -> None:
    # apply_forces keeps views of mjData's arrays; MuJoCo's own reset (after a blow-up)
    # must not leave them pointing elsewhere.
    sim = _sim([0.8, 0.85], [0.002, 0.009])
    mujoco.mj_resetData(sim.model, sim.data)
    sim.reset(np.arange(2))
    sim.set_actions(np.array([[1.0, 0.2], [0.4, 0.9]]))
    sim.apply_forces()
    knee, servo, balloon = _reference_forces(sim)
    frc = sim.data.qfrc_applied.reshape(2, -1)
    assert np.array_equal(frc[:, 5::3], knee) and np.array_equal(frc[:, 6::3], servo)
    xfrc = sim.data.xfrc_applied[1:].reshape(2, BODIES_PER_ROBOT, 6)
    assert np.array_equal(xfrc[:, BALLOON_BODY][:, [0, 2]], balloon)
    assert np.all(knee != 0) and np.all(balloon[:, 1] > 1.5)
