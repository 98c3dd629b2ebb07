"""The generalist baseline: one policy trained on the whole design box with PEC's step budget.

PEC's claim is that K specialists beat one generalist *for the same compute*, so the
baseline's budget is read from the PEC run's own training records (the ``env_steps`` each
training job reported), never re-derived from the configuration, which can change between
invocations. Everything the baseline writes lives under ``<run>/baseline/``.

The training job layer writes checkpoints at the PEC layout of (run, expert, iteration), so
the generalist's jobs carry ``generalist_job_id(state)`` (K, an id no expert of the run uses)
and its files are moved under ``<run>/baseline/checkpoints/chunk_<c>/`` as soon as a job
finishes. Both drivers take a job runner (`pec.jobs.runner`), like every pec activity.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from pec.errors import InputError, JobError, NotFoundError, StateError
from pec.evaluation.designs_file import Design
from pec.evaluation.final_eval_jobs import evaluate_single_policy, single_policy_spec
from pec.iteration.job_inputs import (
    checkpoint_exists,
    train_job_spec,
    write_samples,
)
from pec.jobs.runner import JobRunner
from pec.jobs.spec import EvalJobSpec
from pec.maths.curriculum import starting_level
from pec.maths.design_space import uniform_design_columns
from pec.maths.protocols import ScoreName
from pec.maths.seeds import derive_seed
from pec.runs import layout
from pec.runs.run import Run
from pec.runs.safe_io import read_store_json
from pec.runs.state import PECState
from pec.runs.store.npy import load_npy

log = logging.getLogger(__name__)

_RESULT_RE = re.compile(r"checkpoints/expert_(\d+)/iter_(\d+)/result\.json$")
TRUNK_ID = -1  # the trunk's expert_id in a TrainingRecord


def generalist_job_id(state: PECState) -> int:
    """The expert id the generalist's jobs carry: K, one past the run's last expert.

    The job layer addresses checkpoints by (run, expert, iteration); no expert of the run
    uses K, and the generalist's files are moved under ``<run>/baseline/`` right away.
    """
    return len(state.experts)


# ---------------------------------------------------------------- keys (all under <run>/baseline/)


def baseline_prefix(run_name: str, replica: int = 0) -> str:
    """``<run>/baseline/``; further generalists (other seeds) in ``baseline/replica_<r>/``."""
    if isinstance(replica, bool) or not isinstance(replica, int) or replica < 0:
        raise InputError(f"replica {replica!r} must be an integer >= 0")
    base = layout.run_prefix(run_name) + "baseline/"
    return base if replica == 0 else base + f"replica_{replica}/"


def baseline_record_key(run_name: str, replica: int = 0) -> str:
    return baseline_prefix(run_name, replica) + "baseline.json"


def baseline_samples_dir(run_name: str, chunk: int, replica: int = 0) -> str:
    """A generalist chunk's per-environment designs (gcr.npy, spcf.npy(, leg.npy))."""
    return baseline_prefix(run_name, replica) + f"samples/chunk_{chunk}/"


def baseline_chunk_dir(run_name: str, chunk: int, replica: int = 0) -> str:
    return baseline_prefix(run_name, replica) + f"checkpoints/chunk_{chunk}/"


def baseline_eval_key(run_name: str, designs_stem: str, replica: int = 0) -> str:
    # final_eval_dir validates the stem; reuse its rule for the baseline's folder.
    layout.final_eval_dir(run_name, designs_stem)
    return baseline_prefix(run_name, replica) + f"final_eval/{designs_stem}/results.json"


# ---------------------------------------------------------------- PEC's budget


@dataclass(frozen=True)
class TrainingRecord:
    """One finished training job of the PEC run, as recorded in its result.json (the trunk's
    with expert_id -1)."""

    expert_id: int
    iteration: int
    env_steps: float | None
    ppo_iterations: float | None
    num_envs: int | None


@dataclass(frozen=True)
class StepBudget:
    """Total environment steps PEC spent training the experts that are in its state."""

    env_steps: float
    records: list[TrainingRecord]
    missing: list[tuple[int, int]]  # (expert, iteration) whose result has no env_steps
    rollout_steps: int | None  # env steps per environment per PPO iteration, if derivable

    def as_json(self) -> dict[str, Any]:
        return {
            "env_steps": self.env_steps,
            "records": [asdict(r) for r in self.records],
            "missing": [list(m) for m in self.missing],
            "rollout_steps": self.rollout_steps,
        }


def _num_envs(run: Run, expert_id: int, iteration: int) -> int | None:
    key = layout.samples_keys(run.name, expert_id, iteration)[0]
    try:
        values = load_npy(run.store.read_bytes(key))
    except (NotFoundError, ValueError, OSError, EOFError):
        return None
    return int(values.shape[0]) if values.ndim == 1 else None


def _trunk_envs(run: Run) -> int | None:
    try:
        values = load_npy(run.store.read_bytes(layout.trunk_samples_keys(run.name)[0]))
    except (NotFoundError, ValueError, OSError, EOFError):
        return None
    return int(values.shape[0]) if values.ndim == 1 else None


def training_records(run: Run, state: PECState) -> list[TrainingRecord]:
    """Result records of trainings the state has accepted (iteration ≤ last_trained_pec_iter).

    A training of an iteration the state has not committed yet produced no expert that is
    being evaluated, so it does not count towards the budget.
    """
    records: list[TrainingRecord] = []
    prefix = layout.run_prefix(run.name) + "checkpoints/"
    trunk_key = layout.trunk_dir(run.name) + "result.json"
    for key in run.store.list(prefix):
        if key == trunk_key:  # the trunk's steps count in PEC's budget once it is committed
            if state.trunk is None or not state.trunk.trained:
                continue
            k, it = TRUNK_ID, 0
        else:
            match = _RESULT_RE.search(key)
            if match is None:
                continue
            k, it = int(match.group(1)), int(match.group(2))
            if k >= generalist_job_id(state):
                continue  # the baseline's own scratch id, or a foreign folder
            last = state.experts[k].last_trained_pec_iter
            if last is None or it > last:
                continue
        try:  # a record without metrics counts as a training of unknown size
            data = read_store_json(run.store, key, StateError, finite=False)
        except StateError:
            data = None
        found = data.get("metrics") if isinstance(data, dict) else None
        metrics: dict[str, Any] = found if isinstance(found, dict) else {}
        steps = metrics.get("env_steps")
        ppo = metrics.get("iterations")
        records.append(
            TrainingRecord(
                expert_id=k,
                iteration=it,
                env_steps=float(steps) if isinstance(steps, int | float) else None,
                ppo_iterations=float(ppo) if isinstance(ppo, int | float) else None,
                num_envs=_trunk_envs(run) if k == TRUNK_ID else _num_envs(run, k, it),
            )
        )
    return sorted(records, key=lambda r: (r.iteration, r.expert_id))


def step_budget(records: Sequence[TrainingRecord]) -> StepBudget:
    """Sum of recorded env steps; the rollout length comes from a from-scratch job.

    The trunk, or without one an iteration-0 expert, starts at PPO iteration 0, so its
    ``iterations`` metric is the number of PPO iterations it ran and env_steps /
    (iterations × num_envs) is the rollout (experts forked from a trunk count on from it).
    """
    total = float(sum(r.env_steps for r in records if r.env_steps is not None))
    missing = [(r.expert_id, r.iteration) for r in records if r.env_steps is None]
    rollout: int | None = None
    has_trunk = any(r.expert_id == TRUNK_ID for r in records)
    for r in records:
        scratch = r.expert_id == TRUNK_ID if has_trunk else r.iteration == 0
        if scratch and r.env_steps and r.ppo_iterations and r.num_envs:
            rollout = round(r.env_steps / (r.ppo_iterations * r.num_envs))
            break
    return StepBudget(
        env_steps=total, records=list(records), missing=missing, rollout_steps=rollout
    )


def plan_chunks(budget_steps: float, num_envs: int, rollout_steps: int, chunks: int) -> list[int]:
    """PPO iterations per chunk so the generalist gets at least PEC's env steps (ceil)."""
    if num_envs < 1 or rollout_steps < 1 or chunks < 1:
        raise InputError(
            f"num_envs={num_envs}, rollout_steps={rollout_steps}, chunks={chunks}: all must be >= 1"
        )
    if budget_steps <= 0:
        raise StateError(
            "the PEC run has no recorded training env steps; train it first or pass --max_iterations"
        )
    total = max(chunks, math.ceil(budget_steps / (num_envs * rollout_steps)))
    base, extra = divmod(total, chunks)
    return [base + (1 if c < extra else 0) for c in range(chunks)]


# ---------------------------------------------------------------- training


def _seed(run: Run, label: str, chunk: int, replica: int) -> int:
    # replica 0 keeps the plain labels so its seeds never change when replicas are added
    if replica == 0:
        return derive_seed(run.config.seed, label, chunk)
    return derive_seed(run.config.seed, label, chunk, "replica", replica)


def uniform_samples(
    run: Run, chunk: int, num_envs: int, replica: int = 0
) -> tuple[np.ndarray, ...]:
    """Fresh uniform designs over the whole box, one per environment, seeded per chunk.

    One float32 array per design axis (gcr, spcf(, leg))."""
    return uniform_design_columns(
        run.space, num_envs, _seed(run, "baseline-samples", chunk, replica)
    )


def move_prefix(run: Run, source: str, target: str) -> None:
    """Copy every object under ``source`` to ``target`` (same relative keys), then delete it."""
    for key in run.store.list(source):
        run.store.write_bytes(target + key[len(source) :], run.store.read_bytes(key))
    for key in run.store.list(source):
        run.store.delete(key)


def read_baseline_record(run: Run, replica: int = 0) -> dict[str, Any] | None:
    try:
        return dict(json.loads(run.store.read_bytes(baseline_record_key(run.name, replica))))
    except NotFoundError:
        return None


def _finished_chunk(run: Run, chunk: int, replica: int) -> dict[str, Any] | None:
    key = baseline_chunk_dir(run.name, chunk, replica) + "result.json"
    try:
        data = dict(json.loads(run.store.read_bytes(key)))
    except NotFoundError:
        return None
    return data if checkpoint_exists(run, data.get("checkpoint_uri")) else None


def train_baseline(
    run: Run,
    state: PECState,
    runner: JobRunner,
    *,
    num_envs: int | None = None,
    chunks: int = 1,
    max_iterations: int | None = None,
    on_chunk: Callable[[int, int, dict[str, Any]], None] | None = None,
    replica: int = 0,
    plan: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Train the generalist in ``chunks`` warm-started pieces, each on fresh uniform designs.

        ``chunks > 1`` mirrors PEC's iterations (new samples, warm start, curriculum restart at
        the previous mean level − dl_buffer). ``max_iterations`` (total PPO iterations) overrides
        the budget-derived plan, and ``plan`` (PPO iterations per chunk) both. ``replica`` r > 0
    trains a further generalist with other seeds (to measure seed-to-seed spread). Finished
    chunks are reused. Returns the baseline record.
    """
    cfg = run.config
    job_id = generalist_job_id(state)
    envs = num_envs if num_envs is not None else cfg.effective_num_envs
    budget = step_budget(training_records(run, state))
    explicit = plan is not None
    if plan is not None:
        if not plan or any(isinstance(n, bool) or int(n) < 1 for n in plan):
            raise InputError(f"plan {list(plan)}: give at least one chunk of >= 1 PPO iterations")
        plan = [int(n) for n in plan]
    elif max_iterations is not None:
        if max_iterations < chunks:
            raise InputError(f"--max_iterations {max_iterations} must be >= --chunks {chunks}")
        base, extra = divmod(max_iterations, chunks)
        plan = [base + (1 if c < extra else 0) for c in range(chunks)]
    else:
        if budget.rollout_steps is None:
            raise StateError(
                f"run '{run.name}': no iteration-0 training record with env_steps, iterations and "
                "samples, so the PPO rollout length is unknown; pass --max_iterations"
            )
        if budget.missing:
            log.warning(
                "trainings %s recorded no env_steps; the budget counts only the others",
                budget.missing,
            )
        plan = plan_chunks(budget.env_steps, envs, budget.rollout_steps, chunks)
    done: list[dict[str, Any]] = []
    resume: str | None = None
    level = cfg.dl_initial
    for chunk, iterations in enumerate(plan):
        finished = _finished_chunk(run, chunk, replica)
        if finished is None:
            columns = uniform_samples(run, chunk, envs, replica)
            samples = write_samples(run, baseline_samples_dir(run.name, chunk, replica), columns)
            spec = train_job_spec(
                run,
                state,
                job_id=job_id,
                iteration=chunk,
                samples=samples,
                start_level=level,
                max_iterations=iterations,
                num_envs=envs,
                seed=_seed(run, "baseline-train", chunk, replica),
                resume=resume,
                threads=cfg.job_threads(1),
            )
            (outcome,) = runner.run_jobs([spec])
            result = outcome.train_result()
            if result is None:
                raise JobError(f"generalist chunk {chunk}: {outcome.error}")
            scratch = layout.checkpoint_dir(run.name, job_id, chunk)
            target = baseline_chunk_dir(run.name, chunk, replica)
            move_prefix(run, scratch, target)
            best = run.store.uri(target + layout.BEST_CHECKPOINT_FILE)
            last_key = target + layout.LAST_CHECKPOINT_FILE
            finished = {
                "chunk": chunk,
                "checkpoint_uri": best,
                "last_checkpoint_uri": run.store.uri(last_key)
                if run.store.exists(last_key)
                else None,
                "ppo_iterations": iterations,
                "num_envs": envs,
                "start_level": level,
                "metrics": result.metrics,
                "warning": result.warning,
            }
            run.store.write_bytes(target + "result.json", json.dumps(finished, indent=2).encode())
        done.append(finished)
        if on_chunk is not None:
            on_chunk(chunk, len(plan), finished)
        resume = str(finished["checkpoint_uri"])
        mean_level = (finished.get("metrics") or {}).get("mean_level")
        level = (
            starting_level([float(mean_level)], cfg.dl_initial, cfg.dl_buffer)
            if isinstance(mean_level, int | float) and math.isfinite(mean_level)
            else cfg.dl_initial
        )
    baseline_steps = sum(float((c.get("metrics") or {}).get("env_steps", 0.0)) for c in done)
    record = {
        "run": run.name,
        "replica": replica,
        "checkpoint": done[-1]["checkpoint_uri"],
        "num_envs": envs,
        "plan": plan,
        "chunks": done,
        "baseline_env_steps": baseline_steps,
        "pec_budget": budget.as_json(),
        "budget_source": "plan"
        if explicit
        else "max_iterations"
        if max_iterations is not None
        else "pec records",
    }
    key = baseline_record_key(run.name, replica)
    run.store.write_bytes(key, json.dumps(record, indent=2).encode())
    return record


# ---------------------------------------------------------------- evaluation


def baseline_eval_spec(
    run: Run,
    state: PECState,
    designs: Sequence[Design],
    stem: str,
    num_episodes: int,
    start_difficulty: int,
    replica: int = 0,
    score: ScoreName | None = None,
) -> EvalJobSpec | None:
    """The generalist's evaluation job (same protocol and seed as the experts'), or None.

    `score`: the protocol (None: the run's configured one)."""
    record = read_baseline_record(run, replica)
    job_id = generalist_job_id(state)
    return single_policy_spec(
        run, state, job_id, record, designs, stem, num_episodes, start_difficulty, score
    )


def evaluate_baseline(
    run: Run,
    state: PECState,
    designs: Sequence[Design],
    stem: str,
    runner: JobRunner,
    *,
    num_episodes: int,
    start_difficulty: int,
    replica: int = 0,
    score: ScoreName | None = None,
) -> dict[str, Any]:
    """The generalist on the same designs with the same protocol and seed as the experts
    (`score` None: the run's configured protocol; a stored result is reused only under the
    same protocol)."""
    spec = baseline_eval_spec(
        run, state, designs, stem, num_episodes, start_difficulty, replica, score
    )
    missing = (
        f"run '{run.name}' has no trained baseline "
        f"({run.store.uri(baseline_record_key(run.name, replica))}); "
        "run `pec baseline train` first"
    )
    key = baseline_eval_key(run.name, stem, replica)
    return evaluate_single_policy(
        run, spec, designs, key, runner, "baseline", "the generalist", missing
    )


def read_baseline_eval(run: Run, stem: str, replica: int = 0) -> dict[str, Any] | None:
    try:
        return dict(json.loads(run.store.read_bytes(baseline_eval_key(run.name, stem, replica))))
    except NotFoundError:
        return None
