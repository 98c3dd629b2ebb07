"""`BalluBlocks`: the robots of one job as fixed-size MuJoCo scenes, stepped on T threads.

One scene of N robots costs more per robot as N grows (the constraint solver and the
collision pass see the whole scene), and one `mjData` is stepped by one thread. Here the N
robots are cut into blocks of `block_envs` (the last block holds the rest), each block a
`BalluSim` with its own `MjModel` and `MjData`, and a control step runs every block's
physics steps on a pool of T Python threads: `mj_step` releases the GIL, the numpy force
laws between physics steps hold it (the serial part that caps the speed-up).

Determinism: a robot's trajectory depends on its block (the solver sees the block) but not
on T or on which thread steps the block, because blocks share no state; so results are
bit-identical for every T, and the block size is part of the task settings
(`physics_block_envs`). With one block (N <= block_envs) this is exactly one `BalluSim`.

State: `qpos`, `qvel` (N, 10) and the per-env arrays are this object's own; between
control steps they are the truth (writable, as `BalluSim`'s views are), and `step` /
`leg_points` copy them into the blocks first and back afterwards. With one block they are
that block's live views and nothing is copied.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import mujoco
import numpy as np
from numpy.typing import NDArray

from pec.backends.mujoco.sim import BalluSim, FloatArray

BLOCK_ENVS = 64  # robots per scene unless the task settings say otherwise


class BalluBlocks:
    """`num_envs` BALLU robots in blocks of `block_envs`, stepped on `threads` threads."""

    def __init__(
        self,
        num_envs: int,
        *,
        block_envs: int = BLOCK_ENVS,
        threads: int = 1,
        legs: FloatArray | None = None,
        **sim_kwargs: Any,
    ) -> None:
        if num_envs < 1:
            raise ValueError("num_envs must be >= 1; pass at least one design")
        if block_envs < 1:
            raise ValueError(f"block_envs={block_envs}; pass at least 1 robot per block")
        if threads < 1:
            raise ValueError(f"threads={threads}; pass at least 1 thread")
        self.num_envs = num_envs
        self.block_envs = block_envs
        starts = list(range(0, num_envs, block_envs))
        self.bounds: list[tuple[int, int]] = [(s, min(s + block_envs, num_envs)) for s in starts]
        # Per-env leg lengths (the 3-D design axis) go to each block as its own slice.
        self.legs: FloatArray | None = None if legs is None else np.asarray(legs, np.float64)
        self.blocks = [
            BalluSim(hi - lo, legs=None if self.legs is None else self.legs[lo:hi], **sim_kwargs)
            for lo, hi in self.bounds
        ]
        self.threads = min(threads, len(self.blocks))
        first = self.blocks[0]
        self.body = first.body
        self.terrain = first.terrain
        # One number when every robot is the default body, else one mass per env.
        self.robot_mass: float | FloatArray = first.robot_mass
        if self.legs is not None and len(self.blocks) > 1:
            self.robot_mass = np.concatenate(
                [
                    np.broadcast_to(b.robot_mass, (hi - lo,))
                    for b, (lo, hi) in zip(self.blocks, self.bounds, strict=True)
                ]
            )
        self.init_root_height = first.init_root_height
        self.obstacle_start_x = first.obstacle_start_x
        self.obstacle_length = first.obstacle_length
        self._single = len(self.blocks) == 1
        if self._single:
            self.qpos: FloatArray = first.qpos
            self.qvel: FloatArray = first.qvel
            self.gcr: FloatArray = first.gcr
            self.spcf: FloatArray = first.spcf
            self.buoyancy: FloatArray = first.buoyancy
            self.obstacle_height: FloatArray = first.obstacle_height
        else:
            self.qpos = np.concatenate([b.qpos for b in self.blocks])
            self.qvel = np.concatenate([b.qvel for b in self.blocks])
            self.gcr = np.concatenate([b.gcr for b in self.blocks])
            self.spcf = np.concatenate([b.spcf for b in self.blocks])
            self.buoyancy = np.concatenate([b.buoyancy for b in self.blocks])
            self.obstacle_height = np.concatenate([b.obstacle_height for b in self.blocks])
        self._stable: NDArray[np.bool_] = np.ones(num_envs, dtype=bool)
        self._pool: ThreadPoolExecutor | None = None
        if self.threads > 1:
            pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ballu-physics")
            self._pool = pool
            self._finalizer = weakref.finalize(self, pool.shutdown, wait=False)

    # ------------------------------------------------------------------ blocks
    def _split(self, env_ids: NDArray[np.int64]) -> Iterator[tuple[BalluSim, Any, Any]]:
        """(block, local ids, positions in env_ids) for every block that env_ids touches."""
        ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)
        for block, (lo, hi) in zip(self.blocks, self.bounds, strict=True):
            where = np.nonzero((ids >= lo) & (ids < hi))[0]
            if where.size:
                yield block, ids[where] - lo, where

    def _push(self) -> None:
        """Copy this object's qpos/qvel into the blocks' mjData (several blocks only)."""
        if self._single:
            return
        for block, (lo, hi) in zip(self.blocks, self.bounds, strict=True):
            np.copyto(block.qpos, self.qpos[lo:hi])
            np.copyto(block.qvel, self.qvel[lo:hi])

    def _pull(self) -> None:
        """Copy the blocks' qpos/qvel back into this object's arrays (several blocks only)."""
        if self._single:
            return
        for block, (lo, hi) in zip(self.blocks, self.bounds, strict=True):
            np.copyto(self.qpos[lo:hi], block.qpos)
            np.copyto(self.qvel[lo:hi], block.qvel)

    @property
    def model(self) -> mujoco.MjModel:
        """The scene's MjModel (one block only: each block has its own)."""
        if not self._single:
            raise RuntimeError(f"{len(self.blocks)} blocks, each with its own model; use .blocks")
        return self.blocks[0].model

    @property
    def data(self) -> mujoco.MjData:
        """The scene's MjData (one block only: each block has its own)."""
        if not self._single:
            raise RuntimeError(f"{len(self.blocks)} blocks, each with its own data; use .blocks")
        return self.blocks[0].data

    @property
    def servo_target(self) -> FloatArray:
        """Servo targets (N, 2); a copy when there are several blocks."""
        if self._single:
            return self.blocks[0].servo_target
        return np.concatenate([b.servo_target for b in self.blocks])

    # ------------------------------------------------------------------ design & scene
    def set_design(self, env_ids: NDArray[np.int64], gcr: FloatArray, spcf: FloatArray) -> None:
        """Per-env buoyancy ratio and knee spring coefficient."""
        gcr_all = np.broadcast_to(np.asarray(gcr, dtype=np.float64), np.shape(env_ids))
        spcf_all = np.broadcast_to(np.asarray(spcf, dtype=np.float64), np.shape(env_ids))
        for block, local, where in self._split(env_ids):
            block.set_design(local, gcr_all[where], spcf_all[where])
        if not self._single:
            self.gcr[env_ids] = gcr_all
            self.spcf[env_ids] = spcf_all
            self.buoyancy[:] = np.concatenate([b.buoyancy for b in self.blocks])

    def set_obstacle_heights(self, env_ids: NDArray[np.int64], heights: FloatArray) -> None:
        """Resize each env's obstacle box (see `BalluSim.set_obstacle_heights`)."""
        h = np.broadcast_to(np.asarray(heights, dtype=np.float64), np.shape(env_ids))
        for block, local, where in self._split(env_ids):
            block.set_obstacle_heights(local, h[where])
        if not self._single:
            self.obstacle_height[:] = np.concatenate([b.obstacle_height for b in self.blocks])

    def reset(self, env_ids: NDArray[np.int64]) -> None:
        """Initial pose, zero velocity and zero applied force for these envs only."""
        for block, local, where in self._split(env_ids):
            block.reset(local)
            if not self._single:
                ids = np.asarray(env_ids, dtype=np.int64).reshape(-1)[where]
                self.qpos[ids] = block.qpos[local]
                self.qvel[ids] = block.qvel[local]

    # ------------------------------------------------------------------ stepping
    def set_actions(self, actions: FloatArray) -> None:
        """Map raw actions (num_envs, 2) to servo and knee targets, block by block."""
        for block, (lo, hi) in zip(self.blocks, self.bounds, strict=True):
            block.set_actions(actions[lo:hi])

    def step(self, n_steps: int) -> NDArray[np.bool_]:
        """Advance every robot `n_steps` physics steps; per env, False where its block's
        mjData was reset by MuJoCo (a blow-up resets only that block's robots)."""
        self._push()
        blocks = self.blocks

        def run(i: int) -> bool:
            return blocks[i].step(n_steps)

        stable = self._map(run)
        self._pull()
        for ok, (lo, hi) in zip(stable, self.bounds, strict=True):
            self._stable[lo:hi] = ok
        return self._stable.copy()

    def _map(self, fn: Callable[[int], bool]) -> list[bool]:
        """fn over the block indices, on the pool when there is one (order kept)."""
        if self._pool is None:
            return [fn(i) for i in range(len(self.blocks))]
        return list(self._pool.map(fn, range(len(self.blocks))))

    def close(self) -> None:
        """Stop the physics threads (idle between steps; safe to call twice)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ------------------------------------------------------------------ kinematics
    def leg_points(self) -> tuple[FloatArray, FloatArray]:
        """Knee and foot (x, z) per robot and leg, (N, 2, 2) each, as `BalluSim.leg_points`."""
        if self._single:
            return self.blocks[0].leg_points()
        self._push()
        n = self.num_envs
        knees, feet = np.empty((2, n, 2)), np.empty((2, n, 2))  # [coordinate, env, leg]
        for block, (lo, hi) in zip(self.blocks, self.bounds, strict=True):
            k, f = block.leg_points()
            knees[:, lo:hi] = k.transpose(2, 0, 1)
            feet[:, lo:hi] = f.transpose(2, 0, 1)
        return knees.transpose(1, 2, 0), feet.transpose(1, 2, 0)
