"""Warm-ups, the per-episode level rule and replay episodes, shared by every backend.

Levels live on the host as integer numpy arrays in every backend (they change only at
episode ends); `pec.maths.curriculum` holds the level rule and the level heights themselves.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pec.backends.ballu.settings import BalluTaskSettings
from pec.maths.curriculum import next_levels


def warmup_iteration(task: BalluTaskSettings, age: int, job_start: int) -> int:
    """The iteration the warm-ups read while the policy trains its PPO iteration `age`.

    `age` counts every PPO iteration the policy has trained, in every job (a checkpoint's
    `iter` is its age); `job_start` is the age at which the current training job began (the
    same for every attempt of one job). With `warmup_clock: policy_age` (the default) the
    warm-ups read the age, so a warm start continues them where its checkpoint left them and
    a policy past them fine-tunes with the level rule on and the full goal reward; with
    `warmup_clock: job` they count from the job's start, as the original scripts did.
    """
    if age < job_start:
        raise ValueError(f"age {age} precedes the job's start {job_start}")
    return age if task.warmup_clock == "policy_age" else age - job_start


def curriculum_active(task: BalluTaskSettings, iteration: int, eval_mode: bool) -> bool:
    """The level rule runs in evaluation, or after the curriculum warm-up."""
    return eval_mode or iteration >= task.curriculum_warmup_iterations


def goal_factor(task: BalluTaskSettings, iteration: int, eval_mode: bool) -> float:
    """Goal-reward weight factor: 0 during warm-up, then a linear ramp to 1."""
    if eval_mode:
        return 1.0
    since = iteration - task.goal_warmup_iterations
    if since < 0:
        return 0.0
    if task.goal_ramp_iterations == 0:
        return 1.0
    return float(min(1.0, since / task.goal_ramp_iterations))


def end_episodes(
    task: BalluTaskSettings,
    levels: NDArray[np.int64],
    replaying: NDArray[np.bool_],
    env_ids: NDArray[np.int64],
    root_x: NDArray[np.float64],
    *,
    active: bool,
    eval_mode: bool,
    rng: np.random.Generator,
) -> NDArray[np.int64]:
    """Level rule for the envs whose episode ended, then the level of their next obstacle.

    Updates `levels` and `replaying` in place. A replay episode (training only, see
    `replay_probability`) leaves the level alone; with that probability an env's next
    episode is played at a level drawn uniformly from [0, level] instead.
    """
    ids = np.asarray(env_ids, dtype=np.int64)
    ruled = ids[~replaying[ids]]
    if active and ruled.size:
        x = np.asarray(root_x, dtype=np.float64)[~replaying[ids]]
        levels[ruled] = next_levels(levels[ruled], x, task.promote_x, task.demote_x)
    obstacle_levels = levels[ids].copy()
    replaying[ids] = False
    p = task.replay_probability
    if p > 0 and not eval_mode and active:
        replay = (rng.random(ids.size) < p) & (obstacle_levels > 0)
        picked = rng.integers(0, obstacle_levels + 1)  # uniform in [0, level]
        obstacle_levels = np.where(replay, picked, obstacle_levels)
        replaying[ids] = replay
    return obstacle_levels
