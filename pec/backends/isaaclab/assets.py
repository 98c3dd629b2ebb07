"""The Isaac Lab backend's USD assets, generated from pec's own MJCF (nothing downloaded).

- `ballu.usdc`: one planar BALLU robot, converted with `mujoco-usd-converter` from the MJCF
  that `pec.backends.ballu.body.single_robot_mjcf` writes: the very robot every env of the
  MuJoCo backend's scene is (same bodies, masses, inertias, joints, limits, damping).
- `world.usda`: a ground plane and the obstacle rows (obstacle i centred at x = 1.0,
  y = -2.0 i, 1.0 m long, 2.0 m wide, top at `level_height(i)`, reaching
  `OBSTACLE_BURIAL` below the ground), all static colliders with friction 0.5. For the
  ramp task (`pec.backends.ballu.terrain`) the rows are ramps instead: row i at y = -2.0 i,
  2.0 m wide, peak at `RAMP.level_height(i)`, each the MuJoCo backend's slope plank
  (`pec.backends.mujoco.model.ramp_pose`) as a turned box.

Both are written into a cache directory keyed by a hash of their inputs the first time a
run needs them (`ensure_assets`). Run this module to write them elsewhere:
``python -m pec.backends.isaaclab.assets OUT_DIR``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pec.backends.ballu import facts
from pec.backends.ballu.body import BalluBody, single_robot_mjcf
from pec.backends.ballu.terrain import RAMP
from pec.backends.mujoco.model import OBSTACLE_BURIAL, ramp_pose, with_leg
from pec.maths.curriculum import NUM_LEVELS, level_height

ROBOT_FILE = "ballu.usdc"
WORLD_FILE = "world.usda"
CACHE_ENV = "PEC_ISAACLAB_ASSETS"
CONVERTER_VERSION = "0.6.1"
GROUND_SIZE = 300.0
ROW_SPACING = 2.0  # metres between obstacle rows (env at level L sits at y = -2 L)


@dataclass(frozen=True)
class AssetPaths:
    robot: Path
    world: Path


def robot_mjcf(friction: float, leg: float | None = None) -> str:
    """The robot's MJCF: the default robot, or femur = tibia = `leg` m (`model.with_leg`)."""
    body = BalluBody() if leg is None else with_leg(BalluBody(), leg)
    return single_robot_mjcf(body, friction)


LEG_DECIMALS = 4  # one robot asset per leg length rounded to this many decimals (the original's)


def leg_key(leg: float) -> str:
    """The asset key of a leg length: rounded to LEG_DECIMALS, e.g. '0.3000'."""
    return f"{round(float(leg), LEG_DECIMALS):.{LEG_DECIMALS}f}"


def _convert_robot(mjcf: str, target: Path) -> None:
    """Convert one robot MJCF to USD at `target` (written atomically)."""
    from mujoco_usd_converter import Converter

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        xml = Path(tmp) / "ballu.xml"
        xml.write_text(mjcf)
        converted = Converter(layer_structure=False, scene=False).convert(str(xml), tmp)
        if not converted:
            raise RuntimeError("mujoco-usd-converter could not convert the BALLU MJCF")
        os.replace(Path(str(converted.path)), target)


def ensure_leg_robots(friction: float, legs: Sequence[float]) -> dict[str, Path]:
    """One robot USD per distinct rounded leg length, converted on first use and cached.

    Each asset lives in the cache under a hash of its MJCF and the converter version (like
    the default robot's), so a leg length is converted once per machine and reused by every
    later job; returns {leg_key: path} for the distinct keys of `legs`.
    """
    paths: dict[str, Path] = {}
    for key in sorted({leg_key(v) for v in legs}):
        mjcf = robot_mjcf(friction, float(key))
        digest = hashlib.sha256((mjcf + CONVERTER_VERSION).encode()).hexdigest()[:16]
        target = cache_root() / "legs" / f"leg_{key}_{digest}" / ROBOT_FILE
        if not target.is_file():
            _convert_robot(mjcf, target)
        paths[key] = target
    return paths


def _ramp_rows(start_x: float, length: float) -> list[str]:
    """One slope plank per level (the MuJoCo backend's `ramp_pose`), a turned unit cube."""
    heights = RAMP.level_height(np.arange(NUM_LEVELS))
    half_len, half_depth, centre, quat = ramp_pose(start_x, length, heights)
    rows = []
    for i in range(NUM_LEVELS):
        w, x, y, z = (float(v) for v in quat[i])
        cx, cz = float(centre[i, 0]), float(centre[i, 1])
        sx, sz = float(2 * half_len[i]), float(2 * half_depth[i])
        rows.append(
            f"""
        def Cube "ramp_{i:02d}" (
            prepend apiSchemas = ["PhysicsCollisionAPI", "MaterialBindingAPI"]
        )
        {{
            double size = 1
            double3 xformOp:translate = ({cx!r}, {-ROW_SPACING * i}, {cz!r})
            quatd xformOp:orient = ({w!r}, {x!r}, {y!r}, {z!r})
            double3 xformOp:scale = ({sx!r}, {ROW_SPACING}, {sz!r})
            uniform token[] xformOpOrder = ["xformOp:translate", "xformOp:orient", "xformOp:scale"]
            rel material:binding:physics = </world/Physics/Material>
        }}"""
        )
    return rows


def _world_usda(friction: float, start_x: float, length: float, terrain: str = "obstacle") -> str:
    """USDA text: ground plane + one static piece per level, bound to one friction material.

    Obstacle rows are boxes; ramp rows are the slope planks of `terrain.ramp_box`.
    """
    x_mid = start_x + length / 2
    boxes = [] if terrain == "obstacle" else _ramp_rows(start_x, length)
    for i in range(NUM_LEVELS if terrain == "obstacle" else 0):
        top = level_height(i)
        height = top + OBSTACLE_BURIAL
        centre_z = (top - OBSTACLE_BURIAL) / 2
        boxes.append(
            f"""
        def Cube "obstacle_{i:02d}" (
            prepend apiSchemas = ["PhysicsCollisionAPI", "MaterialBindingAPI"]
        )
        {{
            double size = 1
            double3 xformOp:translate = ({x_mid}, {-ROW_SPACING * i}, {centre_z:.6f})
            float3 xformOp:scale = ({length}, {ROW_SPACING}, {height:.6f})
            uniform token[] xformOpOrder = ["xformOp:translate", "xformOp:scale"]
            rel material:binding:physics = </world/Physics/Material>
        }}"""
        )
    return f"""#usda 1.0
(
    defaultPrim = "world"
    metersPerUnit = 1
    upAxis = "Z"
)

def Xform "world"
{{
    def Scope "Physics"
    {{
        def Material "Material" (
            prepend apiSchemas = ["PhysicsMaterialAPI"]
        )
        {{
            float physics:dynamicFriction = {friction}
            float physics:staticFriction = {friction}
            float physics:restitution = 0
        }}
    }}

    def Plane "ground" (
        prepend apiSchemas = ["PhysicsCollisionAPI", "MaterialBindingAPI"]
    )
    {{
        uniform token axis = "Z"
        double length = {GROUND_SIZE}
        double width = {GROUND_SIZE}
        rel material:binding:physics = </world/Physics/Material>
    }}

    def Xform "obstacles"
    {{{"".join(boxes)}
    }}
}}
"""


def asset_key(
    friction: float = facts.GROUND_FRICTION,
    start_x: float = facts.OBSTACLE_START_X,
    length: float = facts.OBSTACLE_LENGTH,
    terrain: str = "obstacle",
) -> str:
    """Hash of everything the assets are made from (MJCF, world text, converter version)."""
    digest = hashlib.sha256()
    world = _world_usda(friction, start_x, length, terrain)
    for part in (robot_mjcf(friction), world, CONVERTER_VERSION):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def write_assets(
    out_dir: Path,
    friction: float = facts.GROUND_FRICTION,
    start_x: float = facts.OBSTACLE_START_X,
    length: float = facts.OBSTACLE_LENGTH,
    terrain: str = "obstacle",
) -> AssetPaths:
    """Convert the robot MJCF and write the world USD into out_dir (atomically per file)."""
    from mujoco_usd_converter import Converter

    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        xml = Path(tmp) / "ballu.xml"
        xml.write_text(robot_mjcf(friction))
        converted = Converter(layer_structure=False, scene=False).convert(str(xml), tmp)
        if not converted:
            raise RuntimeError("mujoco-usd-converter could not convert the BALLU MJCF")
        os.replace(Path(str(converted.path)), out_dir / ROBOT_FILE)
        world_tmp = Path(tmp) / WORLD_FILE
        world_tmp.write_text(_world_usda(friction, start_x, length, terrain))
        os.replace(world_tmp, out_dir / WORLD_FILE)
    return AssetPaths(robot=out_dir / ROBOT_FILE, world=out_dir / WORLD_FILE)


def cache_root() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pec" / "isaaclab-assets"


def ensure_assets(
    friction: float = facts.GROUND_FRICTION,
    start_x: float = facts.OBSTACLE_START_X,
    length: float = facts.OBSTACLE_LENGTH,
    terrain: str = "obstacle",
) -> AssetPaths:
    """The cached assets for these inputs, generated on first use.

    Another terrain than the obstacles reuses the obstacle assets' robot (the robot does
    not depend on the terrain) and caches its own world beside it.
    """
    if terrain != "obstacle":
        robot = ensure_assets(friction).robot
        world = cache_root() / asset_key(friction, start_x, length, terrain) / WORLD_FILE
        if not world.is_file():
            world.parent.mkdir(parents=True, exist_ok=True)
            tmp = world.with_name(f".{WORLD_FILE}.{os.getpid()}.tmp")
            tmp.write_text(_world_usda(friction, start_x, length, terrain))
            os.replace(tmp, world)
        return AssetPaths(robot=robot, world=world)
    out_dir = cache_root() / asset_key(friction, start_x, length)
    paths = AssetPaths(robot=out_dir / ROBOT_FILE, world=out_dir / WORLD_FILE)
    if not (paths.robot.is_file() and paths.world.is_file()):
        write_assets(out_dir, friction, start_x, length)
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m pec.backends.isaaclab.assets OUT_DIR", file=sys.stderr)
        sys.exit(2)
    written = write_assets(Path(sys.argv[1]))
    print(written.robot)
    print(written.world)
