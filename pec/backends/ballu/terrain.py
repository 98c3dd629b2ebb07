"""The terrains of the BALLU tasks, defined once and built by each simulator.

Two tasks share everything but the thing in front of the robot (`task.terrain`):

- ``obstacle``: a box 1.0 m long in x from x = 0.5 m, top at 0.001 + 0.010 L m for level L
  (`pec.maths.curriculum.level_height`).
- ``ramp`` (the original study's ramp task): a triangular wedge 1.5 m long in x from
  x = 0.5 m, rising from the ground at its near edge to its peak at the far edge
  (x = 2.0 m), where it drops vertically back to the ground; peak height 0.001 + 0.020 L m.
  The original lays 75 wedges, 2 m wide, in rows 2 m apart (row i at y = -2 i), as it does
  the obstacles.

Both use the same 75 integer levels and the same level rule
(`pec.maths.curriculum.next_levels`: root x past `promote_x` = 1.0 -> +1, short of
`demote_x` = 0.5 -> -1). A simulator builds the shape from `Terrain`; the task maths asks
it for the surface height under a point (`surface_height`), which the clearance reward
measures from. Functions take numpy arrays or torch tensors alike, like `facts`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from pec.backends.ballu import facts
from pec.backends.ballu.facts import _xp
from pec.errors import InputError
from pec.maths.curriculum import BASE_HEIGHT, HEIGHT_STEP, MAX_LEVEL, NUM_LEVELS

TerrainKind = Literal["obstacle", "ramp"]
TERRAIN_KINDS: tuple[str, ...] = ("obstacle", "ramp")
ROW_SPACING = 2.0  # y distance between the rows of a level-row world (row i at y = -2 i)
RAMP_HEIGHT_STEP = 0.020  # ramp peak height per level (obstacle: 0.010)


@dataclass(frozen=True)
class Terrain:
    """Shape, placement and level heights of one task's terrain piece (one per level)."""

    kind: TerrainKind
    start_x: float  # near edge: the obstacle's face, the ramp's foot
    length: float  # extent in x
    width: float  # extent in y in a level-row world (MuJoCo lanes use their own width)
    base_height: float  # height at level 0
    height_step: float  # added per level

    @property
    def end_x(self) -> float:
        """Far edge: the obstacle's back face, the ramp's peak."""
        return self.start_x + self.length

    @property
    def max_height(self) -> float:
        """Height of the top level (what a simulator compiles its biggest piece for)."""
        return self.base_height + self.height_step * MAX_LEVEL

    def level_height(self, levels: Any) -> NDArray[np.float64]:
        """Top height (obstacle) or peak height (ramp) for integer levels in [0, 74]."""
        array = np.asarray(levels)
        if array.size and (np.any(array < 0) or np.any(array > MAX_LEVEL)):
            raise InputError(f"level {levels!r} is outside [0, {MAX_LEVEL}]; clip the level first")
        heights: NDArray[np.float64] = self.base_height + self.height_step * array.astype(
            np.float64
        )
        return heights

    def row_heights(self) -> list[float]:
        """Height of every level's piece, level 0 first (a level-row world)."""
        return [float(h) for h in self.level_height(np.arange(NUM_LEVELS))]

    def surface_height(self, x: Any, height: Any) -> Any:
        """Height of the terrain's top under x (0 off the piece), for pieces of `height`.

        x: (n, k) positions; height: (n,) the piece's height per env. Ramp: the slope
        h (x - start) / length over [start, end]; obstacle: h over [start, end].
        """
        xp = _xp(x)
        h = height[:, None]
        on = (x >= self.start_x) & (x <= self.end_x)
        ramp = self.kind == "ramp"
        top = h * ((x - self.start_x) / self.length) if ramp else h + 0.0 * x
        return xp.where(on, top, 0.0 * top)

    def wedge_profile(self, height: float) -> list[tuple[float, float]]:
        """The ramp's cross-section in (x, z), counter-clockwise: foot, far corner, peak."""
        return [(self.start_x, 0.0), (self.end_x, 0.0), (self.end_x, float(height))]


OBSTACLE = Terrain(
    kind="obstacle",
    start_x=0.5,
    length=1.0,
    width=2.0,
    base_height=BASE_HEIGHT,
    height_step=HEIGHT_STEP,
)
RAMP = Terrain(
    kind="ramp",
    start_x=0.5,
    length=1.5,
    width=2.0,
    base_height=BASE_HEIGHT,
    height_step=RAMP_HEIGHT_STEP,
)
TERRAINS: dict[str, Terrain] = {"obstacle": OBSTACLE, "ramp": RAMP}


def terrain_for(kind: str, start_x: float | None = None, length: float | None = None) -> Terrain:
    """The terrain of a task, optionally moved or stretched in x (settings override)."""
    if kind not in TERRAINS:
        raise InputError(f"terrain {kind!r} is unknown; choose one of {', '.join(TERRAIN_KINDS)}")
    base = TERRAINS[kind]
    return Terrain(
        kind=base.kind,
        start_x=base.start_x if start_x is None else float(start_x),
        length=base.length if length is None else float(length),
        width=base.width,
        base_height=base.base_height,
        height_step=base.height_step,
    )


def ramp_box(
    start_x: float, length: float, height: Any, thickness: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Planks whose top faces are ramp slopes: what a simulator without wedges builds.

    A top face runs from the foot (start_x, 0) to the peak (start_x + length, height),
    theta = atan(height / length) up from the x axis; the plank is `thickness` deep
    (perpendicular to the slope), so its near end is buried and nothing reaches under the
    slope from the front. Seen from above it is the wedge; its back end is perpendicular to
    the slope, so past the peak it reaches thickness x sin(theta) further (<= 0.036 m for
    0.05 m at level 74) before the drop. Per height: half length along the slope, half
    thickness, the centre (n, 2) in (x, z), and theta (the plank's x axis turned up by
    theta about y).
    """
    h = np.asarray(height, dtype=np.float64)
    theta = np.arctan2(h, length)
    centre = np.stack(
        [
            start_x + length / 2 + thickness / 2 * np.sin(theta),
            h / 2 - thickness / 2 * np.cos(theta),
        ],
        -1,
    )
    return np.hypot(length, h) / 2, np.full_like(h, thickness / 2), centre, theta


def foot_clearance(terrain: Terrain, feet_x: Any, feet_z: Any, height: Any) -> Any:
    """Lowest sole height above the terrain (the height reward's z), per env.

    Obstacle: the facts' rule, measured from the obstacle top only when both feet are over
    its x span. Ramp: each sole's height above the surface under it, the lower of the two.
    feet_x / feet_z: (n, 2); height: (n,) the piece's height per env.
    """
    if terrain.kind == "obstacle":
        return facts.foot_clearance(feet_x, feet_z, height, terrain.start_x, terrain.length)
    gap = feet_z - terrain.surface_height(feet_x, height)
    low = gap.min(1)
    return low if _xp(gap) is np else low.values
