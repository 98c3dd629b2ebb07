"""Isaac Lab robot assets per leg length: one USD per distinct rounded leg, cached; and the
sim-to-sim trajectory check of benchmarks/bench_sim2sim.py at a short and a long leg."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from pec.backends.ballu.body import BalluBody
from pec.backends.isaaclab.assets import CACHE_ENV, ensure_leg_robots, leg_key

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_sim2sim.py"


def _masses_and_knee(path: Path) -> tuple[dict[str, float], float]:
    """Body masses of a converted robot and the knee's height below the hip (its femur)."""
    from pxr import Usd, UsdPhysics

    stage = Usd.Stage.Open(str(path))
    masses: dict[str, float] = {}
    knee = math.nan
    for prim in stage.Traverse():
        if prim.HasAPI(UsdPhysics.RigidBodyAPI):
            masses[prim.GetName()] = float(UsdPhysics.MassAPI(prim).GetMassAttr().Get())
        if prim.IsA(UsdPhysics.RevoluteJoint) and prim.GetName() == "knee_l":
            joint = UsdPhysics.RevoluteJoint(prim)
            knee = -float(joint.GetLocalPos0Attr().Get()[2])  # in the femur's frame
    return masses, knee


def test_one_usd_per_rounded_leg_converted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert leg_key(0.300004) == leg_key(0.3) == "0.3000" and leg_key(0.45) == "0.4500"
    paths = ensure_leg_robots(0.5, [0.3, 0.45, 0.300004, 0.45])
    assert sorted(paths) == ["0.3000", "0.4500"]
    stamps = {key: path.stat().st_mtime_ns for key, path in paths.items()}
    again = ensure_leg_robots(0.5, [0.45, 0.3])  # cached: nothing converted again
    assert again == paths and {k: p.stat().st_mtime_ns for k, p in again.items()} == stamps
    g = BalluBody()
    for key, path in paths.items():
        leg = float(key)
        masses, knee = _masses_and_knee(path)
        limb = g.limb_density * math.pi * g.link_radius**2 * leg
        assert masses["femur_l"] == pytest.approx(limb, rel=1e-6)
        assert masses["tibia_l"] == pytest.approx(limb + g.electronics_mass, rel=1e-6)
        assert knee == pytest.approx(leg, abs=1e-6)


@pytest.mark.slow
def test_heterogeneous_robots_spawn_with_their_own_legs() -> None:
    # Two envs, legs 0.25 and 0.45 m: each is cloned from its own USD (per-env masses and
    # leg kinematics), and after 2 s standing the longer robot stands as much taller as
    # the same two robots do on MuJoCo.
    import numpy as np
    import torch

    from pec.backends.isaaclab.assets import ensure_assets
    from pec.backends.isaaclab.settings import load_settings
    from pec.backends.isaaclab.task import make_vec_env
    from pec.backends.mujoco.env import BalluVecEnv

    legs = np.array([0.25, 0.45])
    s = load_settings({"task": {"episode_steps": 100, "replay_probability": 0.0}})
    venv = make_vec_env(
        task=s.task,
        gcr=np.full(2, 0.82),
        spcf=np.full(2, 0.005),
        start_level=0,
        seed=0,
        device="cpu",
        physics="newton",
        newton=s.newton,
        assets=ensure_assets(),
        eval_mode=True,
        leg=legs,
    )
    try:
        env = venv.env
        assert venv.get_observations()["policy"].shape == (2, 30)
        masses = env.robot.data.body_mass.torch.numpy()
        femur = env.robot.find_bodies("femur_l")[0][0]
        limb = BalluBody().limb_density * math.pi * BalluBody().link_radius ** 2 * legs
        np.testing.assert_allclose(masses[:, femur], limb, rtol=1e-5)
        assert float(env.robot_mass[1] - env.robot_mass[0]) == pytest.approx(
            4 * (limb[1] - limb[0]), rel=1e-4
        )
        for _ in range(40):
            venv.step(torch.zeros(2, 2))
        z = env.robot.data.joint_pos.torch[:, 1].numpy() + s.task.init_root_height
        mj = BalluVecEnv(2, leg_values=legs, gcr=0.82, spcf=0.005, eval_mode=True)
        for _ in range(40):
            mj.step(torch.zeros(2, 2))
        print("standing isaac", z, "mujoco", mj.sim.qpos[:, 1])
        assert z[1] - z[0] == pytest.approx(mj.sim.qpos[1, 1] - mj.sim.qpos[0, 1], abs=0.02)
        assert z[1] - z[0] > 0.3
    finally:
        venv.close()


def _sim2sim() -> ModuleType:
    """benchmarks/bench_sim2sim.py as a module (its trajectory check is what is tested)."""
    spec = importlib.util.spec_from_file_location("bench_sim2sim", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass resolves its module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_trajectories_match_mujoco_at_a_short_and_a_long_leg() -> None:
    # The bench's trajectory check (its envs, sine gait, simulators and tolerance) at legs
    # 0.25 and 0.45 m in one scene: two designs without and with the level-10 obstacle per
    # leg, 100 control steps; every env's root x, z and pitch stay within the bench's
    # tolerance for all of them (its goal: >= 100 control steps).
    import numpy as np

    bench = _sim2sim()
    designs = [bench.TRAJECTORY_DESIGNS[0], bench.TRAJECTORY_DESIGNS[3]]
    envs = bench.trajectory_envs([0.25, 0.45], 10, designs)
    assert envs.leg.tolist() == [0.25] * 4 + [0.45] * 4
    actions = bench.gait(bench.GOAL_STEPS, len(envs.gcr), envs.periods)
    mj, il, _ = bench.root_trajectories(envs, actions)
    within = bench.steps_within(il - mj, np.array(bench.TOLERANCE))
    print("steps within tolerance, legs 0.25 | 0.45:", within.tolist())
    print("max |d| x, z, pitch per env:", np.abs(il - mj).max(0).round(4).tolist())
    assert within.min() >= bench.GOAL_STEPS, within.tolist()
    # the two leg lengths are two robots: their trajectories differ in both simulators
    assert np.abs(mj[:, :4, 1] - mj[:, 4:, 1]).max() > 0.1
    assert np.abs(il[:, :4, 1] - il[:, 4:, 1]).max() > 0.1
