"""The Isaac Lab backend's USD assets, generated from pec's own MJCF (nothing downloaded).

- `ballu.usdc`: one planar BALLU robot, converted with `mujoco-usd-converter` from the MJCF
  that `pec.backends.ballu.body.single_robot_mjcf` writes: the very robot every env of the
  MuJoCo backend's scene is (same bodies, masses, inertias, joints, limits, damping).
- `world.usda`: a ground plane and the obstacle rows (obstacle i centred at x = 1.0,
  y = -2.0 i, 1.0 m long, 2.0 m wide, top at `level_height(i)`, reaching
  `OBSTACLE_BURIAL` below the ground), all static colliders with friction 0.5.

Both are written into a cache directory keyed by a hash of their inputs the first time a
run needs them (`ensure_assets`). Run this module to write them elsewhere:
``python -m pec.backends.isaaclab.assets OUT_DIR``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pec.backends.ballu import facts
from pec.backends.ballu.body import BalluBody, single_robot_mjcf
from pec.backends.mujoco.model import OBSTACLE_BURIAL
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


def robot_mjcf(friction: float) -> str:
    return single_robot_mjcf(BalluBody(), friction)


def _world_usda(friction: float, start_x: float, length: float) -> str:
    """USDA text: ground plane + one static box per level, bound to one friction material."""
    x_mid = start_x + length / 2
    boxes = []
    for i in range(NUM_LEVELS):
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
) -> str:
    """Hash of everything the assets are made from (MJCF, world text, converter version)."""
    digest = hashlib.sha256()
    for part in (robot_mjcf(friction), _world_usda(friction, start_x, length), CONVERTER_VERSION):
        digest.update(part.encode())
    return digest.hexdigest()[:16]


def write_assets(
    out_dir: Path,
    friction: float = facts.GROUND_FRICTION,
    start_x: float = facts.OBSTACLE_START_X,
    length: float = facts.OBSTACLE_LENGTH,
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
        world_tmp.write_text(_world_usda(friction, start_x, length))
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
) -> AssetPaths:
    """The cached assets for these inputs, generated on first use."""
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
