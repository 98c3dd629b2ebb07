"""Leg length per environment on MuJoCo: the built robots, their physics, the policy input."""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
import pytest
import torch

from pec.backends.ballu import facts
from pec.backends.ballu.body import BalluBody
from pec.backends.base import EvalRequest, ProbeRequest, TrainRequest, design_columns
from pec.backends.mujoco import MujocoBackend
from pec.backends.mujoco.env import NUM_OBS, BalluVecEnv
from pec.backends.mujoco.model import build_scene_xml
from pec.backends.mujoco.settings import BalluTaskSettings
from pec.backends.mujoco.sim import BalluSim
from pec.errors import ConfigError, InputError

LEGS = np.array([0.20, 0.34, 0.48, 0.27])


def _task(**kw: object) -> BalluTaskSettings:
    return BalluTaskSettings.model_validate({"replay_probability": 0.0, **kw})


def _body(model: mujoco.MjModel, name: str) -> int:
    return int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def test_each_env_builds_its_own_leg_length_masses_and_inertias() -> None:
    sim = BalluSim(len(LEGS), legs=LEGS)
    model, g = sim.model, BalluBody()
    limb_mass = g.limb_density * math.pi * g.link_radius**2 * LEGS
    for i, leg in enumerate(LEGS):
        for side in ("l", "r"):
            femur, tibia = _body(model, f"femur_{side}_{i}"), _body(model, f"tibia_{side}_{i}")
            foot = int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, f"foot_{side}_{i}"))
            assert model.body_pos[tibia] == pytest.approx([0, 0, -leg])  # knee at femur's end
            assert model.geom_pos[foot] == pytest.approx([0, 0, -(leg + g.electronics_length)])
            for body in (femur, tibia):  # rho pi r^2 L, cylinder inertia about its centre
                m = model.body_mass[body] if body == femur else None
                if m is not None:
                    assert m == pytest.approx(limb_mass[i], rel=1e-12)
                    axial = m * (3 * g.link_radius**2 + leg**2) / 12
                    # (inertias are bounded below by the body's bound_inertia, 1e-6)
                    want = [
                        max(v, g.bound_inertia) for v in (axial, axial, m * g.link_radius**2 / 2)
                    ]
                    assert sorted(model.body_inertia[body]) == pytest.approx(sorted(want), rel=1e-9)
            # the tibia carries the electronics too: its mass is tibia + electronics
            assert model.body_mass[tibia] == pytest.approx(limb_mass[i] + g.electronics_mass)
    # buoyancy carries each robot's own mass; the rest of the robot is the default one
    default = BalluSim(1).robot_mass
    assert np.allclose(sim.robot_mass - 4 * limb_mass, default - 2 * (g.femur_mass + g.tibia_mass))
    ids = np.arange(len(LEGS))
    sim.set_design(ids, np.full(len(LEGS), 0.8), np.full(len(LEGS), 0.005))
    assert np.allclose(sim.buoyancy, 0.8 * np.asarray(sim.robot_mass) * facts.GRAVITY)
    assert len(set(np.round(sim.robot_mass, 9))) == len(LEGS)


def test_leg_points_follow_each_envs_legs_and_mujocos_feet() -> None:
    sim = BalluSim(len(LEGS), legs=LEGS)
    sim.set_actions(np.array([[0.2, 0.9], [1.0, 0.0], [0.5, 0.5], [0.7, 0.1]]))
    sim.step(37)
    mujoco.mj_forward(sim.model, sim.data)
    knees, feet = sim.leg_points()
    g = BalluBody()
    plain_knees, plain_feet = facts.planar_leg_points(
        sim.qpos, LEGS[:, None], LEGS[:, None] + g.electronics_length, g.foot_radius
    )
    assert np.array_equal(knees, plain_knees) and np.array_equal(feet, plain_feet)
    for i in range(len(LEGS)):
        for k, side in enumerate(("l", "r")):
            foot = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_GEOM, f"foot_{side}_{i}")
            x, _, z = sim.data.geom_xpos[foot]
            assert feet[i, k] == pytest.approx([x, z - g.foot_radius], abs=1e-9)


def test_forces_and_trajectory_with_legs_equal_the_plain_force_laws() -> None:
    # The fused force and kinematics code with per-env legs against the plain facts laws,
    # each robot's buoyancy carrying its own mass; bit-identical states over 300 steps.
    n, rng = 6, np.random.default_rng(3)
    legs = rng.uniform(0.2, 0.48, n)
    gcr, spcf = rng.uniform(0.75, 0.89, n), rng.uniform(0.001, 0.01, n)
    fused, ref = (BalluSim(n, legs=legs) for _ in range(2))
    for s in (fused, ref):
        s.set_design(np.arange(n), gcr, spcf)
        s.set_obstacle_heights(np.arange(n), rng.uniform(0.0, 0.2, n))
    contacts = 0
    for step in range(300):
        if step % 10 == 0:
            actions = rng.uniform(-0.3, 1.3, size=(n, 2))
            for s in (fused, ref):
                s.set_actions(actions)
        fused.apply_forces()
        q, qd = ref.qpos, ref.qvel
        knee = facts.knee_torque(q[:, 5::3], qd[:, 5::3], ref.knee_target, ref.spcf[:, None])
        servo = facts.servo_torque(q[:, 6::3], qd[:, 6::3], ref.servo_target)
        phi, omega, h = q[:, 2] + q[:, 3], qd[:, 2] + qd[:, 3], ref.body.balloon_height
        vx = qd[:, 0] + omega * (h * np.cos(phi))
        vz = qd[:, 1] - omega * (h * np.sin(phi))
        fz = facts.buoyancy_force(ref.gcr, ref.robot_mass) + facts.drag_force(vz, 0.4)
        balloon = np.stack([facts.drag_force(vx, 0.4), fz], 1)
        assert np.array_equal(fused.qfrc[:, 5::3], knee)
        assert np.array_equal(fused.balloon_frc[:, [0, 2]], balloon)
        ref.qfrc[:, 5::3], ref.qfrc[:, 6::3], ref.balloon_frc[:, [0, 2]] = knee, servo, balloon
        for s in (fused, ref):
            mujoco.mj_step(s.model, s.data)
        contacts += ref.data.ncon
        assert fused.data.qpos.tobytes() == ref.data.qpos.tobytes(), step
    assert contacts > 0


def test_longer_legs_stand_taller_and_step_further() -> None:
    # Same design, same commands: the standing height grows with the leg by about the two
    # leg segments' vertical extent; pulling both knees to the same angle then moves the
    # feet further back under the body and drops the body further (a longer step).
    legs = np.array([0.20, 0.30, 0.40, 0.48])
    env = BalluVecEnv(4, _task(), leg_values=legs, gcr=0.82, spcf=0.005, eval_mode=True)
    for _ in range(40):  # 2 s standing with slack cables
        env.step(torch.zeros(4, 2))
    stand = env.sim.qpos[:, 1].copy()
    assert np.all(np.diff(stand) > 0.1)  # per 0.08-0.1 m of each of both segments
    assert np.allclose(np.diff(stand), 2 * np.diff(legs), atol=0.05)
    _, feet = env.sim.leg_points()
    before = feet[:, :, 0].mean(1) - env.sim.qpos[:, 0]
    for _ in range(20):  # 1 s with both cables pulling the knees towards 1.05 rad
        env.step(torch.full((4, 2), 0.6))
    assert np.allclose(env.sim.qpos[:, 5::3], 1.0, atol=0.06)  # the same knee angle
    _, feet = env.sim.leg_points()
    back = before - (feet[:, :, 0].mean(1) - env.sim.qpos[:, 0])
    drop = stand - env.sim.qpos[:, 1]
    assert np.all(np.diff(back) > 0.02), back
    assert np.all(np.diff(drop) > 0.01), drop


def test_the_policy_observes_leg_length_only_in_a_3d_run() -> None:
    flat = BalluVecEnv(
        2, _task(), gcr_values=np.array([0.8, 0.85]), spcf_values=np.array([0.002, 0.009])
    )
    assert flat.num_obs == NUM_OBS == 29 and flat.get_observations()["policy"].shape == (2, 29)
    legs = np.array([0.20, 0.48])
    deep = BalluVecEnv(
        2,
        _task(),
        gcr_values=np.array([0.8, 0.85]),
        spcf_values=np.array([0.002, 0.009]),
        leg_values=legs,
    )
    obs = deep.get_observations()["policy"]
    assert obs.shape == (2, 30)
    assert obs[:, 29].tolist() == [-1.0, 1.0]  # normalised over leg_norm_range (0.20, 0.48)
    assert torch.equal(obs[:, 27:29], flat.get_observations()["policy"][:, 27:29])


def test_bad_leg_lengths_are_refused_with_one_line() -> None:
    with pytest.raises(ConfigError, match=r"leg length 0\.7 m is outside \(0, 0\.6\]"):
        BalluVecEnv(2, _task(), leg_values=np.array([0.3, 0.7]))
    with pytest.raises(ConfigError, match="leg_values has 1 entries for 2 envs"):
        BalluVecEnv(2, _task(), leg_values=np.array([0.3]))
    with pytest.raises(ConfigError, match="NaN"):
        BalluVecEnv(1, _task(), leg_values=np.array([np.nan]))


def test_design_columns_split_designs_by_axis_and_refuse_bad_axes() -> None:
    designs = np.array([[0.8, 0.002, 0.3], [0.85, 0.009, 0.45]])
    cols = design_columns(("gcr", "spcf", "leg"), designs)
    assert cols.gcr.tolist() == [0.8, 0.85] and cols.leg is not None
    assert cols.leg.tolist() == [0.3, 0.45]
    swapped = design_columns(["leg", "gcr", "spcf"], designs[:, [2, 0, 1]])
    assert np.array_equal(swapped.spcf, cols.spcf) and np.array_equal(swapped.leg, cols.leg)
    assert design_columns(("gcr", "spcf"), designs[:, :2]).leg is None
    with pytest.raises(InputError, match="design axis 'arm' is unknown"):
        design_columns(("gcr", "spcf", "arm"), designs)
    with pytest.raises(InputError, match="'leg' is not supported by this backend"):
        design_columns(("gcr", "spcf", "leg"), designs, supported=("gcr", "spcf"))
    with pytest.raises(InputError, match="must name gcr and spcf once each"):
        design_columns(("gcr", "leg"), designs[:, :2])
    with pytest.raises(InputError, match="do not match the 2 axes"):
        design_columns(("gcr", "spcf"), designs)


def test_2d_scene_is_untouched_by_the_leg_axis() -> None:
    args = (3, 0.005, 1.0, 0.5, 1.0, 0.6, 0.5)
    assert build_scene_xml(*args) == build_scene_xml(*args, legs=None)
    default = BalluBody()
    same = build_scene_xml(*args, legs=[default.femur_length] * 3)
    assert same != build_scene_xml(*args)  # the leg family has femur = tibia: not the default


def test_train_evaluate_and_probe_with_legs(tmp_path: Path) -> None:
    settings: dict[str, object] = {
        "task": {"episode_steps": 20, "curriculum_warmup_iterations": 0},
        "ppo": {"actor_hidden_dims": [8], "critic_hidden_dims": [8], "num_steps_per_env": 4},
    }
    backend = MujocoBackend()
    assert backend.design_axes == ("gcr", "spcf", "leg")
    outcome = backend.train(
        TrainRequest(
            gcr=np.full(4, 0.82),
            spcf=np.full(4, 0.005),
            leg=LEGS,
            start_level=0,
            max_iterations=2,
            seed=1,
            device="cpu",
            work_dir=tmp_path,
            settings=settings,
        )
    )
    ckpt = torch.load(outcome.best_checkpoint, weights_only=True)
    assert ckpt["actor_state_dict"]["obs_normalizer._mean"].shape[-1] == 30
    eval_args = {"checkpoint": outcome.best_checkpoint, "seed": 0, "device": "cpu"}
    levels = backend.evaluate(
        EvalRequest(
            gcr=np.full(2, 0.82),
            spcf=np.full(2, 0.005),
            leg=np.array([0.25, 0.45]),
            num_episodes=1,
            start_difficulty=0,
            settings=settings,
            **eval_args,  # type: ignore[arg-type]
        )
    )
    assert len(levels) == 2
    passed = backend.probe_levels(
        ProbeRequest(
            gcr=np.full(2, 0.82),
            spcf=np.full(2, 0.005),
            leg=np.array([0.25, 0.45]),
            levels=np.array([0, 3]),
            settings=settings,
            **eval_args,  # type: ignore[arg-type]
        )
    )
    assert len(passed) == 2
    with pytest.raises(InputError, match="leg has 1 entries for 2 designs"):
        backend.evaluate(
            EvalRequest(
                gcr=np.full(2, 0.82),
                spcf=np.full(2, 0.005),
                leg=np.array([0.3]),
                num_episodes=1,
                start_difficulty=0,
                **eval_args,  # type: ignore[arg-type]
            )
        )


def test_backends_state_which_axes_they_simulate() -> None:
    from pec.backends.isaaclab.backend import IsaacLabBackend
    from pec.backends.registry import BACKEND_DESIGN_AXES, check_design_axes

    assert BACKEND_DESIGN_AXES["mujoco"] == MujocoBackend.design_axes
    assert BACKEND_DESIGN_AXES["isaaclab"] == IsaacLabBackend.design_axes
    check_design_axes("mujoco", ("gcr", "spcf", "leg"))
    check_design_axes("isaaclab", ("gcr", "spcf", "leg"))
    with pytest.raises(ConfigError, match="design axis 'arm' is unknown"):
        check_design_axes("mujoco", ("gcr", "spcf", "arm"))
    BACKEND_DESIGN_AXES["narrow"] = ("gcr", "spcf")  # a backend without the leg axis
    try:
        with pytest.raises(ConfigError, match="backend 'narrow' does not simulate the design"):
            check_design_axes("narrow", ("gcr", "spcf", "leg"))
    finally:
        del BACKEND_DESIGN_AXES["narrow"]
