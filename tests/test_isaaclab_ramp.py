"""The ramp task on real Isaac Lab 3.0 (kit-less Newton on the CPU): rows, slope, level rule.

One 2-env scene (~40 s with Warp's kernel cache warm). The ramp rows are the MuJoCo
backend's slope planks (`pec.backends.mujoco.model.ramp_pose`) as USD boxes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from pec.backends.ballu import facts, terrain
from pec.backends.isaaclab.assets import ROW_SPACING, _world_usda, asset_key, ensure_assets
from pec.backends.isaaclab.settings import load_settings
from pec.backends.mujoco.env import BalluVecEnv
from pec.backends.mujoco.settings import BalluTaskSettings

N = 2


def test_ramp_world_rows_are_the_mujoco_slopes(tmp_path: Path) -> None:
    from pxr import Gf, Usd, UsdGeom

    world = tmp_path / "world.usda"
    world.write_text(_world_usda(0.5, 0.5, 1.5, "ramp"))
    stage = Usd.Stage.Open(str(world))
    assert asset_key(terrain="ramp") != asset_key()  # cached apart from the obstacle world
    mj = BalluVecEnv(1, BalluTaskSettings(terrain="ramp"))
    for level in (0, 20, 74):
        prim = stage.GetPrimAtPath(f"/world/obstacles/ramp_{level:02d}")
        xf = UsdGeom.Xformable(prim).ComputeLocalToWorldTransform(0)
        peak = float(terrain.RAMP.level_height(level))
        # the plank's top face: local (x, y, z) = (+-0.5, 0, 0.5) of the unit cube
        foot = xf.Transform(Gf.Vec3d(-0.5, 0.0, 0.5))
        top = xf.Transform(Gf.Vec3d(0.5, 0.0, 0.5))
        assert (foot[0], foot[2]) == pytest.approx((0.5, 0.0), abs=1e-6)
        assert (top[0], top[2]) == pytest.approx((2.0, peak), abs=1e-6)
        assert foot[1] == pytest.approx(-ROW_SPACING * level)
        mj.set_levels(np.array([level]))  # MuJoCo's plank of the same level: same pose
        geom = 1
        assert mj.sim.model.geom_pos[geom, [0, 2]] == pytest.approx(
            [xf.ExtractTranslation()[0], xf.ExtractTranslation()[2]], abs=1e-6
        )
    assert not stage.GetPrimAtPath("/world/obstacles/obstacle_00")


@pytest.mark.slow
class TestIsaacLabRamp:
    @pytest.fixture(scope="class")
    def venv(self) -> Iterator[object]:
        from pec.backends.isaaclab.task import make_vec_env

        s = load_settings(
            {"task": {"terrain": "ramp", "episode_steps": 100, "replay_probability": 0.0}}
        )
        t = s.task
        env = make_vec_env(
            task=t,
            gcr=np.full(N, 0.82),
            spcf=np.full(N, 0.005),
            start_level=20,
            seed=0,
            device="cpu",
            physics="newton",
            newton=s.newton,
            assets=ensure_assets(
                t.ground_friction, t.obstacle_start_x, t.obstacle_length, t.terrain
            ),
            eval_mode=True,
        )
        yield env
        env.close()

    def test_feet_stand_on_the_slope_and_the_level_rule_moves_rows(self, venv: object) -> None:
        env = venv.env  # type: ignore[attr-defined]
        env._initial_reset = True  # every env at level 20, start pose (no level rule)
        env._reset_idx(torch.arange(N))
        env._initial_reset = False
        env.scene.write_data_to_sim()
        env.sim.forward()
        env.robot.update(0.0)
        assert env.obstacle_height.numpy() == pytest.approx([0.401, 0.401], abs=1e-6)
        q = env.robot.data.default_joint_pos.torch.clone()
        q[:, 0] = torch.tensor([1.25, -0.5])  # over the middle of the ramp; behind its foot
        env.robot.write_joint_position_to_sim_index(position=q, env_ids=torch.arange(N).int())
        hold = torch.full((N, 2), facts.INIT_SERVO / math.pi)  # servos kept at the start angle
        for _ in range(60):  # 3 s
            venv.step(hold)  # type: ignore[attr-defined]
        qs, _ = env.planar_state()
        _, feet = env.leg_points(qs)
        surface = env.task.terrain_shape.surface_height(feet[:, :, 0], env.obstacle_height)
        assert torch.all((feet[0, :, 0] > 0.5) & (feet[0, :, 0] < 2.0))
        assert torch.all(surface[0] > 0.1)  # resting on the slope, well above the ground
        assert torch.allclose(feet[:, :, 1], surface, atol=0.005)
        # the same two robots on MuJoCo end where these do (measured: within 1e-6 m)
        mj = BalluVecEnv(N, BalluTaskSettings(terrain="ramp"), gcr=0.82, spcf=0.005, eval_mode=True)
        mj.set_levels(np.array([20, 20]))
        mj.sim.qpos[:, 0] = [1.25, -0.5]
        for _ in range(60):
            mj.step(hold)
        np.testing.assert_allclose(qs[:, :2].numpy(), mj.sim.qpos[:, :2], atol=0.01)
        # episode end: env 0 past x = 1.0 goes up a ramp, env 1 short of 0.5 goes down one
        env.episode_length_buf[:] = env.task.episode_steps - 1
        venv.step(torch.zeros(N, 2))  # type: ignore[attr-defined]
        assert env.levels.tolist() == [21, 19]
        y = env.robot.data.root_link_pose_w.torch[:, 1].numpy()
        np.testing.assert_allclose(y, [-42.0, -38.0], atol=1e-5)
        heights = terrain.RAMP.level_height(np.array([21, 19]))
        np.testing.assert_allclose(env.obstacle_height.numpy(), heights, atol=1e-6)
