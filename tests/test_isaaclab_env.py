"""pec's BALLU task on real Isaac Lab 3.0 (kit-less Newton, MuJoCo-Warp on the CPU).

One 4-env scene is shared by the module (creating one costs ~40 s with Warp's kernel
cache warm, minutes cold). Physics parity is checked against the embedded MuJoCo backend
(`BalluSim`): both build the same robot from `pec.backends.ballu.body` (the first test reads
it back from the solver's model); what differs is float32 and the MuJoCo-Warp solver,
hence the stated tolerances.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from support.ballu_models import robot_numbers

from pec.backends.ballu import facts
from pec.backends.ballu.body import BODY_NAMES, BalluBody
from pec.backends.isaaclab.assets import ROW_SPACING, ensure_assets
from pec.backends.isaaclab.settings import load_settings
from pec.backends.mujoco.sim import BalluSim
from pec.maths.curriculum import level_height

pytestmark = pytest.mark.slow

N = 4
HOLD = facts.INIT_SERVO / math.pi  # the action that keeps the servos at their start angle


@pytest.fixture(scope="module")
def venv() -> Iterator[object]:
    from pec.backends.isaaclab.task import make_vec_env

    s = load_settings(
        {
            "task": {
                "episode_steps": 100,
                "curriculum_warmup_iterations": 0,
                "replay_probability": 0.0,
            }
        }
    )
    env = make_vec_env(
        task=s.task,
        gcr=np.full(N, 0.85),
        spcf=np.full(N, 0.005),
        start_level=0,
        seed=0,
        device="cpu",
        physics="newton",
        newton=s.newton,
        assets=ensure_assets(),
    )
    yield env
    env.close()


def _restart(venv: object, levels: list[int], gcr: list[float], drag: float = 0.4) -> object:
    """Every env at its level, start pose, new designs; the level rule does not run."""
    env = venv.env  # type: ignore[attr-defined]
    env.task = env.task.model_copy(update={"drag_coefficient": drag})
    env.set_design(torch.tensor(gcr), torch.full((N,), 0.005))
    env.levels[:] = levels
    env.replaying[:] = False
    env._initial_reset = True
    env._reset_idx(torch.arange(N))
    env._initial_reset = False
    env.scene.write_data_to_sim()
    env.sim.forward()
    env.robot.update(0.0)
    return env


def _hold(venv: object, steps: int) -> None:
    for _ in range(steps):
        venv.step(torch.full((N, 2), HOLD))  # type: ignore[attr-defined]


def _mujoco(gcr: list[float], drag: float = 0.4) -> BalluSim:
    sim = BalluSim(len(gcr), drag_coefficient=drag)
    ids = np.arange(len(gcr))
    sim.set_design(ids, np.array(gcr), np.full(len(gcr), 0.005))
    sim.set_obstacle_heights(ids, np.full(len(gcr), level_height(0)))
    sim.set_actions(np.full((len(gcr), 2), HOLD))
    return sim


def test_isaac_lab_simulates_the_mujoco_backends_robot(venv: object) -> None:
    # Read back what MuJoCo-Warp simulates inside Isaac Lab (Newton's solver model, float32)
    # and compare it with the MuJoCo backend's compiled scene: one robot in both.
    from isaaclab_newton.physics.newton_manager import NewtonManager

    solver = NewtonManager._solver  # no public accessor in Isaac Lab 3.0
    warp, cpu = solver.mjw_model, solver.mj_model
    mine = robot_numbers(BalluSim(1).model)
    bodies = np.arange(1, 1 + len(BODY_NAMES))  # world first, then env 0's robot
    for i, name in zip(bodies, BODY_NAMES, strict=True):  # the same bodies, in the same order
        assert cpu.body(int(i)).name.endswith(f"_{name}"), (cpu.body(int(i)).name, name)
    np.testing.assert_allclose(warp.body_mass.numpy()[0, bodies], mine["body_mass"], rtol=1e-6)
    np.testing.assert_allclose(
        warp.body_inertia.numpy()[0, bodies], mine["body_inertia"], rtol=1e-5, atol=1e-12
    )
    np.testing.assert_allclose(cpu.body_ipos[bodies], mine["body_ipos"], atol=1e-6)
    np.testing.assert_allclose(cpu.body_pos[bodies[1:]], mine["body_pos_local"], atol=1e-6)
    # damping: the joint's own plus any drive's velocity gain (there must be none on top)
    damping = warp.dof_damping.numpy()[0].astype(np.float64)
    trn, bias = warp.actuator_trnid.numpy(), warp.actuator_biasprm.numpy()[0]
    for a in range(trn.shape[0]):
        damping[trn[a, 0]] -= bias[a, 2]
    np.testing.assert_allclose(damping, mine["dof_damping"], rtol=1e-6)
    np.testing.assert_allclose(warp.dof_armature.numpy()[0], mine["dof_armature"], rtol=1e-6)
    limited = cpu.jnt_limited.astype(bool)
    np.testing.assert_array_equal(limited, mine["jnt_limited"].astype(bool))
    np.testing.assert_allclose(cpu.jnt_range[limited], mine["jnt_range"][limited], atol=1e-6)
    feet = [g for g in range(cpu.ngeom) if "foot_" in cpu.geom(g).name]
    assert len(feet) == 2
    friction = warp.geom_friction.numpy()[0, feet]
    np.testing.assert_allclose(friction, mine["foot_friction"], rtol=1e-6)
    np.testing.assert_allclose(cpu.geom_size[feet, :1], mine["foot_size"][:, :1], rtol=1e-6)
    np.testing.assert_array_equal(cpu.geom_condim[feet], mine["foot_condim"])
    np.testing.assert_allclose(cpu.geom_solref[feet], mine["foot_solref"], rtol=1e-6)
    np.testing.assert_allclose(cpu.geom_solimp[feet], mine["foot_solimp"], rtol=1e-6)
    assert int(warp.opt.cone) == int(mine["cone"][0])
    assert int(warp.opt.integrator) == int(mine["integrator"][0])
    # the buoyancy carries the same mass in both
    assert venv.env.robot_mass == pytest.approx(BalluBody().buoyant_mass, rel=1e-6)  # type: ignore[attr-defined]


def test_reset_and_step_shapes(venv: object) -> None:
    _restart(venv, [0, 1, 2, 3], [0.8] * N)
    obs = venv.get_observations()  # type: ignore[attr-defined]
    assert obs["policy"].shape == (N, facts.NUM_OBS) and obs["policy"].dtype == torch.float32
    obs, rew, dones, extras = venv.step(torch.zeros(N, 2))  # type: ignore[attr-defined]
    assert obs["policy"].shape == (N, 29) and torch.isfinite(obs["policy"]).all()
    assert rew.shape == (N,) and dones.shape == (N,) and extras["time_outs"].shape == (N,)
    assert {"/reward/goal", "/reward/height", "/curriculum/mean_level"} <= set(extras["log"])
    # observation layout: obstacle height and previous action where the MuJoCo env has them
    np.testing.assert_allclose(obs["policy"][:, 19].numpy(), level_height(np.arange(4)), atol=1e-6)
    np.testing.assert_allclose(obs["policy"][:, 25:27].numpy(), 0.0)


def test_net_vertical_force_at_rest_matches_mujoco(venv: object) -> None:
    # From rest, feet in the air, no drag: the root's vertical speed after 0.05 s is set by
    # the net weight (1 - GCR) m g; a floatier robot falls more slowly.
    gcr = [0.75, 0.80, 0.85, 0.89]
    env = _restart(venv, [0] * N, gcr, drag=0.0)
    _hold(venv, 1)
    vz_isaac = env.robot.data.joint_vel.torch[:, 1].numpy()
    sim = _mujoco(gcr, drag=0.0)
    sim.step(10)
    vz_mujoco = sim.qvel[:, 1]
    print("vz isaac", vz_isaac, "mujoco", vz_mujoco)
    assert np.all(np.diff(vz_isaac) > 0)  # monotone in GCR
    # one robot in both (same masses, root links and servo arms): equal up to float32
    np.testing.assert_allclose(vz_isaac, vz_mujoco, rtol=1e-3, atol=1e-5)


def test_knee_torque_curve_matches_mujoco(venv: object) -> None:
    spcf = np.array([0.001, 0.004, 0.007, 0.010])
    env = _restart(venv, [0] * N, [0.8] * N)
    env.set_design(torch.full((N,), 0.8), torch.tensor(spcf))
    sim = _mujoco([0.8] * N)
    sim.set_design(np.arange(N), np.full(N, 0.8), spcf)
    actions = np.array([[0.0, 0.1], [0.3, 0.5], [0.6, 0.8], [1.0, 0.2]])
    for knee in (0.0, 0.4, 0.9, 1.5):
        q = env.robot.data.default_joint_pos.torch.clone()
        q[:, [5, 8]] = knee
        env.robot.write_joint_position_to_sim_index(position=q, env_ids=torch.arange(N).int())
        env.robot.update(0.0)
        env._pre_physics_step(torch.tensor(actions, dtype=torch.float32))
        env._apply_action()
        tau_isaac = env.robot.data.joint_effort_target.torch[:, [5, 8]].numpy()
        sim.qpos[:, [5, 8]] = knee
        sim.qvel[:] = 0.0
        sim.set_actions(actions)
        sim.apply_forces()
        np.testing.assert_allclose(tau_isaac, sim.qfrc[:, [5, 8]], rtol=1e-5, atol=1e-7)
    # the spring at rest angle 0 grows with spcf: -2 spcf 0.7854 (clipped at 0.0848)
    assert np.all(np.diff(-sim.qfrc[:, 8]) >= 0)


def test_obstacle_rows_follow_levels(venv: object) -> None:
    from pxr import Usd, UsdGeom

    levels = [0, 7, 30, 74]
    env = _restart(venv, levels, [0.85] * N)
    y = env.robot.data.root_link_pose_w.torch[:, 1].numpy()
    np.testing.assert_allclose(y, -ROW_SPACING * np.array(levels), atol=1e-5)
    np.testing.assert_allclose(
        env.obstacle_height.numpy(), level_height(np.array(levels)), atol=1e-7
    )
    # the collider of each row has its top at that level's height, as the MuJoCo boxes do
    stage = Usd.Stage.Open(str(ensure_assets().world))
    sim = _mujoco([0.85] * N)
    sim.set_obstacle_heights(np.arange(N), level_height(np.array(levels)))
    for k, level in enumerate(levels):
        box = UsdGeom.Cube(stage.GetPrimAtPath(f"/world/obstacles/obstacle_{level:02d}"))
        top = box.ComputeWorldBound(0, "default").ComputeAlignedRange().GetMax()[2]
        geom = 1 + k  # MuJoCo: ground plane first, then one box per env
        mj_top = sim.model.geom_pos[geom, 2] + sim.model.geom_size[geom, 2]
        assert top == pytest.approx(level_height(level), abs=1e-6)
        assert mj_top == pytest.approx(top, abs=1e-6)


def test_passive_drop_settles_like_mujoco_and_lands_on_the_obstacle(venv: object) -> None:
    # Envs 0-1 drop onto the ground in front of the obstacle; envs 2-3 drop from x = 1 m
    # onto the level-40 obstacle (0.401 m) and stand that much higher.
    env = _restart(venv, [0, 0, 40, 40], [0.85] * N)
    q = env.robot.data.default_joint_pos.torch.clone()
    q[2:, 0] = 1.0
    env.robot.write_joint_position_to_sim_index(position=q, env_ids=torch.arange(N).int())
    _hold(venv, 40)  # 2 s, within one episode
    z = env.robot.data.joint_pos.torch[:, 1].numpy() + 1.2
    sim = _mujoco([0.85])
    sim.step(400)
    print("settled isaac", z, "mujoco", sim.qpos[0, 1])
    assert z[0] == pytest.approx(sim.qpos[0, 1], abs=0.002)
    assert z[2] - z[0] == pytest.approx(level_height(40), abs=0.03)


def test_non_finite_state_ends_only_that_episode(venv: object) -> None:
    env = _restart(venv, [0] * N, [0.85] * N)
    qd = torch.zeros(N, 10)
    qd[1, 5] = float("nan")
    env.robot.write_joint_velocity_to_sim_index(velocity=qd, env_ids=torch.arange(N).int())
    obs, _, dones, extras = venv.step(torch.full((N, 2), HOLD))  # type: ignore[attr-defined]
    assert dones.tolist() == [0, 1, 0, 0] and not bool(extras["time_outs"][1])
    assert torch.isfinite(obs["policy"]).all()
    assert env.levels[1] == 0  # a blown-up episode counts as neither pass nor fail
    _hold(venv, 3)
    assert torch.isfinite(env.robot.data.joint_pos.torch).all()
    assert torch.isfinite(env.robot.data.joint_vel.torch).all()


def test_level_rule_moves_envs_between_rows(venv: object) -> None:
    env = _restart(venv, [5, 5, 5, 74], [0.85] * N)
    q = env.robot.data.default_joint_pos.torch.clone()
    q[:, 0] = torch.tensor([1.3, 0.7, 0.0, 1.3])
    env.robot.write_joint_position_to_sim_index(position=q, env_ids=torch.arange(N).int())
    env.episode_length_buf[:] = env.task.episode_steps - 1
    _, _, dones, extras = venv.step(torch.full((N, 2), HOLD))  # type: ignore[attr-defined]
    assert dones.tolist() == [1, 1, 1, 1] and bool(extras["time_outs"].all())
    assert env.levels.tolist() == [6, 5, 4, 74]
    y = env.robot.data.root_link_pose_w.torch[:, 1].numpy()
    np.testing.assert_allclose(y, [-12.0, -10.0, -8.0, -148.0], atol=1e-5)
    np.testing.assert_allclose(env.robot.data.joint_pos.torch[:, 0].numpy(), 0.0, atol=1e-6)


def test_an_episode_under_inference_mode_leaves_the_env_resettable(venv: object) -> None:
    # Probes and evaluations step under torch.inference_mode; a later reset (the next probe
    # round on the same env) updates the action buffers in place outside it.
    env = _restart(venv, [0] * N, [0.8] * N)
    with torch.inference_mode():
        _hold(venv, 1)
    env._initial_reset = True
    env._reset_idx(torch.arange(N))  # raised "Inplace update to inference tensor" before
    env._initial_reset = False
    assert not env.servo_tgt.is_inference() and not env.prev_actions.is_inference()
    np.testing.assert_allclose(env.servo_tgt.numpy(), facts.INIT_SERVO, rtol=1e-6)
    _hold(venv, 1)
    np.testing.assert_allclose(env.servo_tgt.numpy(), HOLD * math.pi, rtol=1e-6)
