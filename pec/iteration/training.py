"""Step 1: an expert's training job and its recorded result.

`prepare_training` writes the expert's per-environment samples (drawn from its Gaussian) and
describes its job: its budget and warm start (`trainable`), its starting obstacle level from
its previous frontier scores (`starting_level_for`). A finished training is recorded in
result.json (`record_train_result`) and found again by `read_train_result`.
"""

from __future__ import annotations

import json

import numpy as np

from pec.errors import StateError
from pec.faults import fault_point
from pec.iteration.budget import training_budget
from pec.iteration.frontier import read_scores
from pec.iteration.job_inputs import (
    checkpoint_exists,
    train_job_spec,
    write_samples,
)
from pec.iteration.trunk import trunk_checkpoint, trunk_plan
from pec.jobs.spec import TrainJobResult, TrainJobSpec
from pec.maths.curriculum import starting_level
from pec.maths.design_space import axis_columns
from pec.maths.init import sample_designs
from pec.maths.seeds import derive_seed
from pec.runs import layout, run_records
from pec.runs.run import Run
from pec.runs.state import BudgetRecord, PECState


def previous_scores(run: Run, iteration: int, expert_id: int) -> list[float] | None:
    """Expert k's frontier scores of iteration N-1 (for dl), or None when missing."""
    if iteration <= 0:
        return None
    scores = read_scores(run, iteration - 1)
    if scores is None:
        return None
    rows = scores["scores"]
    row = rows[expert_id] if expert_id < len(rows) else None
    if row is None:
        return None
    who = f"{run.store.uri(layout.scores_key(run.name, iteration - 1))}: expert {expert_id}"
    width = len(row) if isinstance(row, list) and row else 1
    return [float(v) for v in run_records.check_levels(row, width, who, StateError)]


def starting_level_for(run: Run, iteration: int, expert_id: int) -> int:
    return starting_level(
        previous_scores(run, iteration, expert_id), run.config.dl_initial, run.config.dl_buffer
    )


def training_samples(run: Run, state: PECState, expert_id: int) -> tuple[np.ndarray, ...]:
    """Fresh per-environment designs from the expert's current Gaussian, seeded per (expert, iteration).

    One float32 array per design axis, in the space's order (gcr, spcf(, leg)).
    """
    expert = state.experts[expert_id]
    rng = np.random.default_rng(
        derive_seed(run.config.seed, "train-samples", expert_id, state.iteration)
    )
    return axis_columns(
        sample_designs(
            np.asarray(expert.mu, dtype=float),
            np.asarray([expert.sigma[i][i] for i in range(state.dim)], dtype=float),
            run.config.effective_num_envs,
            run.space,
            rng,
        )
    )


def prepare_training(
    run: Run, state: PECState, expert_id: int, budget: BudgetRecord | None = None
) -> TrainJobSpec:
    """Write the expert's samples for this iteration and describe its training job.

    Its PPO iterations are its entry in `budget` (default `training_budget`); at iteration 0
    of a run with a trunk it warm-starts from the trunk's checkpoint (the state must hold it).
    """
    cfg = run.config
    iteration = state.iteration
    budget = budget if budget is not None else training_budget(run, state)
    iterations, resume = trainable(run, state, expert_id, budget)
    columns = training_samples(run, state, expert_id)
    samples = write_samples(run, layout.samples_dir(run.name, expert_id, iteration), columns)
    return train_job_spec(
        run,
        state,
        job_id=expert_id,
        iteration=iteration,
        samples=samples,
        start_level=starting_level_for(run, iteration, expert_id),
        max_iterations=iterations,
        num_envs=cfg.effective_num_envs,
        seed=derive_seed(cfg.seed, "train", expert_id, iteration),
        threads=cfg.job_threads(cfg.experts_in_flight),
        resume=resume,
    )


def trainable(
    run: Run, state: PECState, expert_id: int, budget: BudgetRecord | None = None
) -> tuple[int, str | None]:
    """(PPO iterations, warm-start checkpoint) of the expert's training at this iteration.

    Refused (StateError) when `budget_rule: wins` gave its budget away, or when iteration 0
    forks from a trunk that is not trained yet; nothing is written.
    """
    iteration = state.iteration
    budget = budget if budget is not None else training_budget(run, state)
    iterations = budget.ppo_iterations[expert_id]
    if iterations < 1:
        raise StateError(
            f"expert {expert_id} has no training budget at iteration {iteration}: it won no "
            f"frontier candidate at iteration {iteration - 1} and budget_rule "
            f"'{run.config.budget_rule}' gave its PPO iterations to the others; train another "
            "expert (or --set budget_rule=equal)"
        )
    if iteration > 0:
        resume = state.experts[expert_id].checkpoint
        # an expert that never got a checkpoint starts from scratch with iteration 0's budget
        return (iterations if resume else run.config.max_iterations_iter0), resume
    if trunk_plan(run)[0] > 0:
        return iterations, trunk_checkpoint(run, state)
    return iterations, None


def record_train_result(run: Run, spec: TrainJobSpec, result: TrainJobResult) -> str:
    """result.json of a training, with the dl it started at (also for results of older jobs)."""
    result = result.model_copy(update={"dl": spec.start_level})
    key = spec.checkpoint_dir + "result.json"
    run.store.write_bytes(key, json.dumps(result.model_dump(mode="json"), indent=2).encode())
    fault_point("train-result-recorded")
    return key


def read_train_result(run: Run, expert_id: int, iteration: int) -> TrainJobResult | None:
    """A finished training of (expert, iteration) whose checkpoint still exists, else None."""
    result = run_records.read_train_result(run.store, run.name, expert_id, iteration)
    if result is None:
        return None
    if not checkpoint_exists(run, result.checkpoint_uri):
        return None
    return result


def trained_dl(run: Run, expert_id: int, iteration: int) -> int | None:
    """The starting level (dl) the expert's training of ``iteration`` used, from its result."""
    return run_records.read_train_dl(run.store, run.name, expert_id, iteration)
