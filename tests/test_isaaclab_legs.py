"""Isaac Lab robot assets per leg length: one USD per distinct rounded leg, cached."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pec.backends.isaaclab.assets import CACHE_ENV, ensure_leg_robots, leg_key
from pec.backends.mujoco.model import LIMB_DENSITY, BalluGeometry


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
    g = BalluGeometry()
    for key, path in paths.items():
        leg = float(key)
        masses, knee = _masses_and_knee(path)
        limb = LIMB_DENSITY * math.pi * g.link_radius**2 * leg
        assert masses["femur_l"] == pytest.approx(limb, rel=1e-6)
        assert masses["tibia_l"] == pytest.approx(limb + g.electronics_mass, rel=1e-6)
        assert knee == pytest.approx(leg, abs=1e-6)
