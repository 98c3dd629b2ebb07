"""The trunk: one policy trained on the whole design box that iteration 0's experts fork from.

`trunk_plan` splits iteration 0's PPO iterations between the trunk and the experts
(`trunk_share`); `prepare_trunk` writes its samples and describes its training job;
`trunk_checkpoint` is what the experts warm-start from.
"""

from __future__ import annotations

import numpy as np

from pec.errors import StateError
from pec.iteration.job_inputs import (
    checkpoint_exists,
    train_job_spec,
    write_samples,
)
from pec.jobs.spec import TrainJobResult, TrainJobSpec
from pec.maths.budget import trunk_split
from pec.maths.design_space import uniform_design_columns
from pec.maths.seeds import derive_seed
from pec.runs import layout, run_records
from pec.runs.run import Run
from pec.runs.state import PECState


def trunk_plan(run: Run) -> tuple[int, int]:
    """(the trunk's PPO iterations, each expert's at iteration 0); (0, ...) without a trunk."""
    cfg = run.config
    return trunk_split(cfg.K, cfg.max_iterations_iter0, cfg.trunk_share)


def trunk_checkpoint(run: Run, state: PECState) -> str:
    """The trunk checkpoint iteration 0's experts fork from; refused when it is missing."""
    trunk = state.trunk
    if trunk is None or trunk.checkpoint is None or not checkpoint_exists(run, trunk.checkpoint):
        raise StateError(
            f"run '{run.name}' forks its experts from a trunk (trunk_share "
            f"{run.config.trunk_share}) but has no trained trunk yet; run `pec train-trunk` "
            "first (or --set trunk_share=0 to start every expert from scratch)"
        )
    return trunk.checkpoint


def trunk_samples(run: Run, num_envs: int) -> tuple[np.ndarray, ...]:
    """Uniform designs over the whole box, one per environment, seeded by the run's seed.

    One float32 array per design axis, in the space's order (gcr, spcf(, leg)).
    """
    return uniform_design_columns(
        run.space, num_envs, derive_seed(run.config.seed, "trunk-samples")
    )


def prepare_trunk(run: Run, state: PECState) -> TrainJobSpec:
    """Write the trunk's samples and describe its training job (from scratch, whole box)."""
    cfg = run.config
    iterations, _ = trunk_plan(run)
    if iterations < 1:
        raise StateError(
            f"run '{run.name}' has no trunk: trunk_share {cfg.trunk_share} leaves it no PPO "
            "iteration; --set trunk_share=0.5 (for example) to fork the experts from one"
        )
    columns = trunk_samples(run, cfg.effective_num_envs)
    samples = write_samples(run, layout.trunk_samples_dir(run.name), columns)
    return train_job_spec(
        run,
        state,
        job_id=len(state.experts),
        iteration=0,
        role="trunk",
        samples=samples,
        start_level=cfg.dl_initial,
        max_iterations=iterations,
        num_envs=cfg.effective_num_envs,
        seed=derive_seed(cfg.seed, "trunk"),
        threads=cfg.job_threads(1),
    )


def read_trunk_result(run: Run) -> TrainJobResult | None:
    """The trunk's finished training whose checkpoint still exists, else None."""
    key = layout.trunk_dir(run.name) + "result.json"
    result = run_records.read_train_result_at(run.store, key)
    if result is None or not checkpoint_exists(run, result.checkpoint_uri):
        return None
    return result
