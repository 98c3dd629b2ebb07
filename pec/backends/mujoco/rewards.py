"""The task's weighted rewards on preallocated buffers: the facts formulas, call for call.

`pec.backends.ballu.facts` holds the one definition of the goal, clearance, height and
velocity rewards (the Isaac Lab backend uses it as is). At 64 envs each small numpy call
costs more than its numbers, and the facts functions go through numpy's Python wrappers
(`clip`, `.all`, `.min`, `where`) and allocate every temporary. `RewardKernel` performs the
same IEEE operations on the same operands in the same order, as ufuncs with `out=`
buffers: `clip(x, min=a)` is `maximum(x, a)` and `clip(x, max=a)` is `minimum(x, a)` (what
numpy's clip runs), `.all(1)` / `.min(1)` are the reductions they call, and `where(m, a, b)`
is b with a copied in where m. `tests/test_mujoco_env.py` checks it equals the facts
functions bit for bit on random and edge-case inputs.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pec.backends.ballu.facts import HEIGHT_REWARD_CAP, VELOCITY_REWARD_CAP
from pec.backends.mujoco.settings import BalluTaskSettings

FloatArray = NDArray[np.float64]


class RewardKernel:
    """Weighted goal, height and velocity rewards and their scaled sum, for `num_envs` envs.

    The returned arrays are this kernel's buffers: valid until the next call.
    """

    def __init__(self, num_envs: int, task: BalluTaskSettings) -> None:
        n = num_envs
        self.goal_x = task.goal_x
        self.lo = task.obstacle_start_x
        self.hi = task.obstacle_start_x + task.obstacle_length
        self.length = task.obstacle_length
        self.ramp = task.terrain == "ramp"
        self._top = np.zeros((n, 2))
        self._surface = np.zeros((n, 2))
        self.goal_weight = task.goal_weight
        self.height_weight = task.height_weight
        self.velocity_weight = task.velocity_weight
        self.reward_scale = task.reward_scale
        self.goal, self.height, self.vel, self.total = (np.zeros(n) for _ in range(4))
        self._tmp, self._alt = np.zeros(n), np.zeros(n)
        self._in_a = np.zeros((n, 2), dtype=bool)
        self._in_b = np.zeros((n, 2), dtype=bool)
        self._mask = np.zeros(n, dtype=bool)

    def __call__(
        self,
        feet_x: FloatArray,
        feet_z: FloatArray,
        vx: FloatArray,
        obstacle_height: FloatArray,
        goal_factor: float,
    ) -> tuple[FloatArray, tuple[FloatArray, FloatArray, FloatArray]]:
        """(total, (goal, height, velocity)) as the env's reward of `facts` computes them."""
        goal, height, vel, total = self.goal, self.height, self.vel, self.total
        tmp, alt, mask = self._tmp, self._alt, self._mask
        # goal: w * (max(0, 1 - 0.33 |goal_x - (x_l + x_r) / 2|) * factor)
        np.add(feet_x[:, 0], feet_x[:, 1], out=goal)
        np.divide(goal, 2, out=goal)
        np.subtract(self.goal_x, goal, out=goal)
        np.abs(goal, out=goal)
        np.multiply(0.33, goal, out=goal)
        np.subtract(1.0, goal, out=goal)
        np.maximum(goal, 0.0, out=goal)
        np.multiply(goal, goal_factor, out=goal)
        np.multiply(self.goal_weight, goal, out=goal)
        in_a, in_b = self._in_a, self._in_b
        np.greater_equal(feet_x, self.lo, out=in_a)
        np.less_equal(feet_x, self.hi, out=in_b)
        np.bitwise_and(in_a, in_b, out=in_a)
        if self.ramp:
            # clearance z: min over feet of sole - (on ? h (x - lo) / length : 0 * that)
            top, surface = self._top, self._surface
            np.subtract(feet_x, self.lo, out=top)
            np.divide(top, self.length, out=top)
            np.multiply(obstacle_height[:, None], top, out=top)
            np.multiply(0.0, top, out=surface)
            np.copyto(surface, top, where=in_a)
            np.subtract(feet_z, surface, out=surface)
            np.minimum.reduce(surface, 1, out=alt)  # alt = z
        else:
            # clearance z: lowest sole minus (over ? obstacle height : 0 * obstacle height)
            np.logical_and.reduce(in_a, 1, out=mask)
            np.multiply(0.0, obstacle_height, out=tmp)
            np.copyto(tmp, obstacle_height, where=mask)
            np.minimum.reduce(feet_z, 1, out=alt)
            np.subtract(alt, tmp, out=alt)  # alt = z
        # height: w * (z > cap ? 0 z : expm1(1.73 min(z, cap)))
        np.greater(alt, HEIGHT_REWARD_CAP, out=mask)
        np.minimum(alt, HEIGHT_REWARD_CAP, out=height)
        np.multiply(1.73, height, out=height)
        np.expm1(height, out=height)
        np.multiply(0.0, alt, out=tmp)
        np.copyto(height, tmp, where=mask)
        np.multiply(self.height_weight, height, out=height)
        # velocity: w * (vx > cap ? 0 vx : (vx < 0 ? expm1(min(vx, 0)) : vx))
        np.minimum(vx, 0.0, out=tmp)
        np.expm1(tmp, out=tmp)
        np.copyto(vel, vx)
        np.less(vx, 0, out=mask)
        np.copyto(vel, tmp, where=mask)
        np.multiply(0.0, vx, out=tmp)
        np.greater(vx, VELOCITY_REWARD_CAP, out=mask)
        np.copyto(vel, tmp, where=mask)
        np.multiply(self.velocity_weight, vel, out=vel)
        # (goal + height + velocity) * scale
        np.add(goal, height, out=total)
        np.add(total, vel, out=total)
        np.multiply(total, self.reward_scale, out=total)
        return total, (goal, height, vel)
