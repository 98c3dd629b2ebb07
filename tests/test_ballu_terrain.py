"""The task terrains (pec.backends.ballu.terrain) and the MuJoCo scene built from them."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from pec.backends.ballu import terrain
from pec.backends.mujoco.env import BalluVecEnv
from pec.backends.mujoco.model import OBSTACLE_GEOM_OFFSET
from pec.backends.mujoco.settings import BalluTaskSettings, MujocoSettings
from pec.backends.registry import validate_backend_settings
from pec.errors import ConfigError, InputError
from pec.maths.curriculum import MAX_LEVEL, level_height


def _task(**kw: object) -> BalluTaskSettings:
    return BalluTaskSettings.model_validate({"replay_probability": 0.0, **kw})


def _surface_by_ray(env: BalluVecEnv, env_id: int, x: float) -> tuple[float, int]:
    """Height of whatever the scene holds under (x, lane of env_id), by a downward ray."""
    model, data = env.sim.model, env.sim.data
    mujoco.mj_forward(model, data)
    hit = np.zeros(1, dtype=np.int32)
    lane_y = env_id * env.task.lane_spacing + 0.2  # beside the robot, inside the piece's width
    top = 5.0
    dist = mujoco.mj_ray(
        model, data, np.array([x, lane_y, top]), np.array([0.0, 0.0, -1.0]), None, 1, -1, hit
    )
    return top - dist, int(hit[0])


def test_ramp_levels_are_the_originals_and_obstacle_levels_the_curriculum() -> None:
    levels = np.arange(MAX_LEVEL + 1)
    assert np.array_equal(terrain.OBSTACLE.level_height(levels), level_height(levels))
    ramp = terrain.RAMP.level_height(levels)
    assert ramp[0] == pytest.approx(0.001) and ramp[74] == pytest.approx(0.001 + 0.02 * 74)
    assert np.allclose(np.diff(ramp), 0.02)
    assert (terrain.RAMP.start_x, terrain.RAMP.end_x, terrain.RAMP.width) == (0.5, 2.0, 2.0)
    assert terrain.ROW_SPACING == 2.0 and len(terrain.RAMP.row_heights()) == 75
    with pytest.raises(InputError, match="outside"):
        terrain.RAMP.level_height(np.array([75]))


def test_settings_pick_the_terrain_and_its_length() -> None:
    assert _task().terrain == "obstacle" and _task().obstacle_length == 1.0
    ramp = _task(terrain="ramp")
    assert ramp.obstacle_length == 1.5 and ramp.terrain_shape == terrain.RAMP
    assert _task(terrain="ramp", obstacle_length=2.0).terrain_shape.end_x == 2.5
    # the dump round-trips (a checkpoint's settings rebuild the same task)
    assert BalluTaskSettings.model_validate(ramp.model_dump()) == ramp
    with pytest.raises(ConfigError, match=r"backend_settings\.task\.terrain"):
        validate_backend_settings("mujoco", {"task": {"terrain": "stairs"}})
    assert MujocoSettings.model_validate({"task": {"terrain": "ramp"}}).task.terrain == "ramp"
    validate_backend_settings("isaaclab", {"task": {"terrain": "ramp"}})  # both build ramps


@pytest.mark.parametrize("kind", ["obstacle", "ramp"])
def test_the_scene_holds_each_envs_terrain_at_its_level(kind: str) -> None:
    env = BalluVecEnv(3, _task(terrain=kind))
    env.set_levels(np.array([0, 12, MAX_LEVEL]))
    shape = env.terrain
    for i, level in enumerate((0, 12, MAX_LEVEL)):
        height = float(shape.level_height(level))
        assert env.sim.obstacle_height[i] == pytest.approx(height)
        for x in (0.45, 0.55, 0.9, 1.3, 1.49, 1.7, 1.99, 2.2):
            got, geom = _surface_by_ray(env, i, x)
            want = float(shape.surface_height(np.array([[x]]), np.array([height]))[0, 0])
            assert got == pytest.approx(want, abs=1e-9), (kind, level, x)
            on_piece = shape.start_x < x < shape.end_x
            assert (geom == OBSTACLE_GEOM_OFFSET + i) == on_piece
    if kind == "ramp":  # the slope rises linearly from the foot to the peak
        peak, _ = _surface_by_ray(env, 2, 1.999)
        half, _ = _surface_by_ray(env, 2, 1.25)
        assert peak == pytest.approx(1.481 * 1.499 / 1.5) and half == pytest.approx(1.481 / 2)


def test_the_level_rule_moves_each_ramp_to_the_next_level() -> None:
    env = BalluVecEnv(3, _task(terrain="ramp"), start_level=5, eval_mode=True)
    env.end_episodes(np.arange(3), np.array([1.2, 0.7, 0.1]))  # past 1.0, between, short of 0.5
    assert env.levels.tolist() == [6, 5, 4]
    for i, level in enumerate((6, 5, 4)):
        got, _ = _surface_by_ray(env, i, 2.0 - 1e-9)
        assert got == pytest.approx(0.001 + 0.02 * level)


def test_feet_stand_on_the_slope() -> None:
    # A robot dropped over the middle of a level-20 ramp (peak 0.401 m) comes to rest with
    # its feet on the slope; its neighbour, behind the ramp's foot, on the ground.
    env = BalluVecEnv(2, _task(terrain="ramp"), gcr=0.8, eval_mode=True)
    env.set_levels(np.array([20, 20]))
    env.sim.qpos[:, 0] = [1.25, -0.5]
    for _ in range(60):  # 3 s
        env.step(torch.zeros(2, 2))
    _, feet = env.sim.leg_points()
    surface = env.terrain.surface_height(feet[:, :, 0], env.sim.obstacle_height)
    assert np.all((feet[0, :, 0] > 0.5) & (feet[0, :, 0] < 2.0))
    assert np.all(surface[0] > 0.1)  # on the slope, well above the ground
    assert np.allclose(feet[:, :, 1], surface, atol=3e-3)  # resting on it, not in it
    assert np.allclose(feet[1, :, 1], 0.0, atol=3e-3)


def test_the_config_task_reaches_the_jobs_as_the_terrain() -> None:
    from pec.runs.config import PECConfig

    assert PECConfig().job_backend_settings == {}  # unset: the obstacle task, settings as given
    ramp = PECConfig(task="ramp", backend_settings={"task": {"episode_steps": 40}})
    assert ramp.job_backend_settings == {"task": {"episode_steps": 40, "terrain": "ramp"}}
    assert ramp.backend_settings == {"task": {"episode_steps": 40}}  # the record is untouched
    with pytest.raises(ValueError, match=r"task: ramp contradicts backend_settings\.task\.terrain"):
        PECConfig(task="ramp", backend_settings={"task": {"terrain": "obstacle"}})
    assert PECConfig(task="ramp", backend="isaaclab").job_backend_settings == {
        "task": {"terrain": "ramp"}
    }
