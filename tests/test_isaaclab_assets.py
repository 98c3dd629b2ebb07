"""The Isaac Lab assets are pec's own MJCF converted to USD, regenerated and checked here."""

from __future__ import annotations

import math
from pathlib import Path

import mujoco
import numpy as np
import pytest
from pxr import Usd, UsdGeom, UsdPhysics

from pec.backends.ballu.body import JOINT_NAMES, BalluBody
from pec.backends.isaaclab.assets import (
    ROW_SPACING,
    asset_key,
    ensure_assets,
    robot_mjcf,
    write_assets,
)
from pec.maths.curriculum import NUM_LEVELS, level_height


def _robot_facts(path: Path) -> dict[str, object]:
    """Bodies with masses and joints with limits (radians) of a converted robot USD."""
    stage = Usd.Stage.Open(str(path))
    masses: dict[str, float] = {}
    limits: dict[str, tuple[float, float]] = {}
    colliders: list[str] = []
    for prim in stage.Traverse():
        if prim.HasAPI(UsdPhysics.RigidBodyAPI):
            masses[prim.GetName()] = float(UsdPhysics.MassAPI(prim).GetMassAttr().Get())
        if prim.HasAPI(UsdPhysics.CollisionAPI):
            colliders.append(prim.GetName())
        if prim.IsA(UsdPhysics.RevoluteJoint):
            j = UsdPhysics.RevoluteJoint(prim)
            lo, hi = j.GetLowerLimitAttr().Get(), j.GetUpperLimitAttr().Get()
            limits[prim.GetName()] = (math.radians(lo), math.radians(hi))
        elif prim.IsA(UsdPhysics.PrismaticJoint):
            limits[prim.GetName()] = (-math.inf, math.inf)
    return {"masses": masses, "limits": limits, "colliders": sorted(colliders)}


def test_regenerated_assets_match_the_cache_and_the_mjcf(tmp_path: Path) -> None:
    fresh = write_assets(tmp_path / "fresh")
    cached = ensure_assets()
    assert cached.robot.parent.name == asset_key()
    facts = _robot_facts(fresh.robot)
    assert facts == _robot_facts(cached.robot)
    assert fresh.world.read_text() == cached.world.read_text()

    # the USD carries the MJCF's bodies, masses and joint limits
    model = mujoco.MjModel.from_xml_string(robot_mjcf(0.5))
    for i in range(1, model.nbody):
        name = model.body(i).name
        assert facts["masses"][name] == pytest.approx(model.body_mass[i], rel=1e-6)  # type: ignore[index]
    limits = facts["limits"]
    assert set(limits) == set(JOINT_NAMES)  # type: ignore[arg-type]
    for j in range(model.njnt):
        if model.jnt_limited[j]:
            lo, hi = limits[model.joint(j).name]  # type: ignore[index]
            assert (lo, hi) == pytest.approx(tuple(model.jnt_range[j]), abs=1e-5)
    assert limits["knee_l"] == pytest.approx((0.0, BalluBody().knee_range[1]), abs=1e-5)  # type: ignore[index]
    assert facts["colliders"] == ["foot_l", "foot_r"]  # only the feet touch anything
    robot_mass = float(model.body_mass[3:].sum())  # pelvis subtree
    body = BalluBody()
    assert robot_mass == pytest.approx(body.buoyant_mass - body.root_link_mass, rel=1e-9)


def test_world_has_a_ground_and_one_row_per_level(tmp_path: Path) -> None:
    stage = Usd.Stage.Open(str(write_assets(tmp_path).world))
    assert stage.GetPrimAtPath("/world/ground").HasAPI(UsdPhysics.CollisionAPI)
    tops, ys = [], []
    for i in range(NUM_LEVELS):
        prim = stage.GetPrimAtPath(f"/world/obstacles/obstacle_{i:02d}")
        assert prim.HasAPI(UsdPhysics.CollisionAPI)
        box = UsdGeom.Cube(prim).ComputeWorldBound(0, "default").ComputeAlignedRange()
        lo, hi = box.GetMin(), box.GetMax()
        tops.append(hi[2])
        ys.append((lo[1] + hi[1]) / 2)
        assert (lo[0], hi[0]) == pytest.approx((0.5, 1.5))
        assert lo[2] < 0  # buried, as the MuJoCo boxes: a foot can't be pushed under it
    np.testing.assert_allclose(tops, level_height(np.arange(NUM_LEVELS)), atol=1e-6)
    np.testing.assert_allclose(ys, -ROW_SPACING * np.arange(NUM_LEVELS), atol=1e-9)
    material = UsdPhysics.MaterialAPI(stage.GetPrimAtPath("/world/Physics/Material"))
    assert material.GetDynamicFrictionAttr().Get() == pytest.approx(0.5)


def test_asset_key_changes_with_what_the_assets_are_made_of() -> None:
    assert asset_key() == asset_key(0.5, 0.5, 1.0)
    assert len({asset_key(), asset_key(0.7), asset_key(0.5, 0.6), asset_key(0.5, 0.5, 0.8)}) == 4
