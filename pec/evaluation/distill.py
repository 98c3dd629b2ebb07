"""Distillation: one student policy for the whole design box, taught by the run's experts.

Each stage is a training job of the job contract (`pec.jobs.spec.TrainJobSpec`), so it runs
through any job runner (local, subprocess, Docker, Prefect) with the same crash rule:

- stage 0, imitation: fresh uniform designs over the box (every axis of the run's design
  space: GCR x spcf, x leg length in 3-D), one per environment; each design is
  labelled with the expert a router picks (`score_informed` by default: the run's frontier and
  final evaluations, falling back to the nearest centre where there is no evidence;
  `nearest_centre` on request). The student drives its own rollouts (DAgger, see
  `pec.backends.mujoco.imitation`) and is fitted to its teachers' actions on the states it
  visited. The student sees the same design inputs as its teachers (29 observations in 2-D,
  30 with the leg length in 3-D): it is built on the same environments.
- stage 1, optional PPO fine-tune (`finetune_iterations` > 0): warm-started from the student,
  on fresh uniform designs, with the warm-ups off (the student already walks).

The job layer writes checkpoints at the PEC layout of (run, expert, iteration), so the
student's jobs carry `student_job_id(state)` (K + 1; the generalist uses K) and their files
are moved under ``<run>/distill/checkpoints/stage_<s>/`` as soon as a job finishes. Finished
stages are reused. The record (``<run>/distill/distill.json``) holds the student's checkpoint
and the env steps every stage used: the comparison counts them in PEC's budget.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from pec.errors import InputError, JobError, NotFoundError, StateError
from pec.evaluation.baseline import move_prefix
from pec.evaluation.designs_file import Design
from pec.evaluation.evidence import route_designs, router_evidence_size, run_evidence
from pec.evaluation.final_eval_jobs import evaluate_single_policy, single_policy_spec
from pec.iteration.job_inputs import (
    checkpoint_exists,
    job_settings,
    train_job_spec,
    write_samples,
)
from pec.jobs.runner import JobRunner
from pec.maths.curriculum import starting_level
from pec.maths.design_space import uniform_design_columns
from pec.maths.protocols import ScoreName
from pec.maths.score_routing import check_router
from pec.maths.seeds import derive_seed
from pec.runs import layout
from pec.runs.checkpoints import check_expert_checkpoints
from pec.runs.run import Run
from pec.runs.state import PECState
from pec.runs.store.npy import npy_bytes

log = logging.getLogger(__name__)

IMITATION_STAGE = 0
FINETUNE_STAGE = 1
DEFAULT_ROUTER = "score_informed"
# A fine-tune starts from a policy past every warm-up: none of them restarts.
NO_WARMUPS = {
    "curriculum_warmup_iterations": 0,
    "goal_warmup_iterations": 0,
    "goal_ramp_iterations": 0,
}


def student_job_id(state: PECState) -> int:
    """The expert id the student's jobs carry: K + 1 (K is the generalist's)."""
    return len(state.experts) + 1


# ---------------------------------------------------------------- keys (all under <run>/distill/)


def distill_prefix(run_name: str) -> str:
    return layout.run_prefix(run_name) + "distill/"


def distill_record_key(run_name: str) -> str:
    return distill_prefix(run_name) + "distill.json"


def stage_samples_dir(run_name: str, stage: int) -> str:
    """A stage's per-environment designs (gcr.npy, spcf.npy(, leg.npy)) and teacher.npy."""
    return distill_prefix(run_name) + f"samples/stage_{stage}/"


def stage_samples_keys(run_name: str, stage: int) -> tuple[str, str, str]:
    base = stage_samples_dir(run_name, stage)
    return base + "gcr.npy", base + "spcf.npy", base + "teacher.npy"


def stage_leg_samples_key(run_name: str, stage: int) -> str:
    """leg.npy of a 3-D run's stage (leg length per environment, metres)."""
    return stage_samples_dir(run_name, stage) + "leg.npy"


def stage_dir(run_name: str, stage: int) -> str:
    return distill_prefix(run_name) + f"checkpoints/stage_{stage}/"


def student_eval_key(run_name: str, designs_stem: str) -> str:
    layout.final_eval_dir(run_name, designs_stem)  # validates the stem
    return distill_prefix(run_name) + f"final_eval/{designs_stem}/results.json"


# ---------------------------------------------------------------- labels


def teachers_of(run: Run, state: PECState) -> list[str]:
    """Every expert's checkpoint URI, in expert order; refused when one is missing."""
    uris: list[str] = []
    for expert in state.experts:
        if expert.checkpoint is None or not checkpoint_exists(run, expert.checkpoint):
            raise StateError(
                f"run '{run.name}': expert {expert.id} has no checkpoint in the store; "
                "train the run (`pec run`) before distilling it"
            )
        uris.append(expert.checkpoint)
    return uris


def stage_designs(run: Run, stage: int, num_envs: int) -> tuple[np.ndarray, ...]:
    """Fresh uniform designs over the whole box, one per environment, seeded per stage.

    One float32 array per design axis, in the space's order (gcr, spcf(, leg)).
    """
    seed = derive_seed(run.config.seed, "distill-samples", stage)
    return uniform_design_columns(run.space, num_envs, seed)


def label_designs(
    run: Run,
    state: PECState,
    columns: Sequence[np.ndarray],
    router: str,
    exclude_stem: str | None = None,
) -> tuple[np.ndarray, int]:
    """The teacher (expert id) of each design by `router` over all the run's axes, and the
    evidence size it used; `columns` holds one array per axis (`stage_designs`)."""
    points = run.space.points("designs", np.stack(list(columns), 1).astype(np.float64))
    evidence = None
    if router == "score_informed":
        evidence = run_evidence(
            run.store, run.name, len(state.experts), state.iteration, exclude_stem
        )
    labels = route_designs(points, state, run.space, router, evidence)
    return labels.astype(np.int64), 0 if evidence is None else router_evidence_size(evidence)


# ---------------------------------------------------------------- training


def read_distill_record(run: Run) -> dict[str, Any] | None:
    try:
        return dict(json.loads(run.store.read_bytes(distill_record_key(run.name))))
    except NotFoundError:
        return None


def _finished_stage(run: Run, stage: int) -> dict[str, Any] | None:
    try:
        data = dict(json.loads(run.store.read_bytes(stage_dir(run.name, stage) + "result.json")))
    except NotFoundError:
        return None
    return data if checkpoint_exists(run, data.get("checkpoint_uri")) else None


def _check_inputs(num_envs: int, iterations: int, finetune_iterations: int, lr: float) -> None:
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise InputError(f"num_envs={num_envs!r}: pass a whole number >= 1")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise InputError(f"iterations={iterations!r}: pass at least 1 distillation iteration")
    if (
        isinstance(finetune_iterations, bool)
        or not isinstance(finetune_iterations, int)
        or finetune_iterations < 0
    ):
        raise InputError(f"finetune_iterations={finetune_iterations!r}: pass 0 or more")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise InputError(f"learning_rate={lr!r}: pass a finite number > 0")


def distill_student(
    run: Run,
    state: PECState,
    runner: JobRunner,
    *,
    iterations: int,
    finetune_iterations: int = 0,
    num_envs: int | None = None,
    router: str = DEFAULT_ROUTER,
    learning_rate: float = 3e-3,
    exclude_stem: str | None = None,
    on_stage: Callable[[int, int, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Distil the run's experts into one student (see the module docstring); its record.

    `iterations`: imitation rounds (each one PPO-sized rollout of `num_envs` environments);
    `finetune_iterations`: PPO iterations after it (0: none); `router`: `score_informed` or
    `nearest_centre`; `exclude_stem`: a final evaluation the score-informed labels must not see
    (the designs set the student will be scored on). Returns the record written to
    ``distill/distill.json``: ``checkpoint`` (the student), ``env_steps`` (all stages),
    ``stages`` and the labels' share per expert.
    """
    cfg = run.config
    check_router(router)
    envs = cfg.effective_num_envs if num_envs is None else num_envs
    _check_inputs(envs, iterations, finetune_iterations, learning_rate)
    teachers = teachers_of(run, state)
    check_expert_checkpoints(run.store, state)  # every teacher loads safely, before any write
    job_id = student_job_id(state)
    plan = [iterations] + ([finetune_iterations] if finetune_iterations > 0 else [])
    done: list[dict[str, Any]] = []
    resume: str | None = None
    level = cfg.dl_initial
    label_shares: list[float] = []
    evidence_size = 0
    for stage, stage_iterations in enumerate(plan):
        finished = _finished_stage(run, stage)
        if finished is not None and (
            finished.get("iterations") != stage_iterations or finished.get("num_envs") != envs
        ):
            raise StateError(
                f"run '{run.name}' already has distillation stage {stage} with "
                f"{finished.get('iterations')} iterations x {finished.get('num_envs')} envs, not "
                f"{stage_iterations} x {envs}; pass those, or delete "
                f"{run.store.uri(distill_prefix(run.name).rstrip('/'))}/ to distil again"
            )
        columns = stage_designs(run, stage, envs)
        if stage == IMITATION_STAGE:
            labels, evidence_size = label_designs(run, state, columns, router, exclude_stem)
            counts = np.bincount(labels, minlength=len(teachers))
            label_shares = [float(c) / envs for c in counts]
        if finished is None:
            samples = write_samples(run, stage_samples_dir(run.name, stage), columns)
            teacher_key = stage_samples_keys(run.name, stage)[2]
            settings = job_settings(run, state)
            if stage == IMITATION_STAGE:
                run.store.write_bytes(teacher_key, npy_bytes(labels))
            else:
                task = dict(settings.get("task") or {})
                settings["task"] = {**task, **NO_WARMUPS}
            spec = train_job_spec(
                run,
                state,
                job_id=job_id,
                iteration=stage,
                samples=samples,
                start_level=level,
                max_iterations=stage_iterations,
                num_envs=envs,
                seed=derive_seed(cfg.seed, "distill-train", stage),
                threads=cfg.job_threads(1),
                resume=resume,
                settings=settings,
                teacher_checkpoint_uris=teachers if stage == IMITATION_STAGE else None,
                samples_teacher_key=teacher_key if stage == IMITATION_STAGE else None,
            )
            (outcome,) = runner.run_jobs([spec])
            result = outcome.train_result()
            if result is None:
                raise JobError(f"distillation stage {stage}: {outcome.error}")
            target = stage_dir(run.name, stage)
            move_prefix(run, layout.checkpoint_dir(run.name, job_id, stage), target)
            last_key = target + layout.LAST_CHECKPOINT_FILE
            finished = {
                "stage": stage,
                "kind": "imitation" if stage == IMITATION_STAGE else "ppo_finetune",
                "checkpoint_uri": run.store.uri(target + layout.BEST_CHECKPOINT_FILE),
                "last_checkpoint_uri": run.store.uri(last_key)
                if run.store.exists(last_key)
                else None,
                "iterations": stage_iterations,
                "num_envs": envs,
                "start_level": level,
                "metrics": result.metrics,
                "warning": result.warning,
            }
            run.store.write_bytes(target + "result.json", json.dumps(finished, indent=2).encode())
        done.append(finished)
        if on_stage is not None:
            on_stage(stage, len(plan), finished)
        resume = str(finished["checkpoint_uri"])
        mean_level = (finished.get("metrics") or {}).get("mean_level")
        level = (
            starting_level([float(mean_level)], cfg.dl_initial, cfg.dl_buffer)
            if isinstance(mean_level, int | float) and math.isfinite(mean_level)
            else cfg.dl_initial
        )
    env_steps = sum(float((s.get("metrics") or {}).get("env_steps", 0.0)) for s in done)
    record = {
        "run": run.name,
        "checkpoint": done[-1]["checkpoint_uri"],
        "env_steps": env_steps,
        "router": router,
        "router_evidence": evidence_size,
        "label_share": label_shares,
        "teachers": teachers,
        "num_envs": envs,
        "plan": plan,
        "learning_rate": learning_rate,
        "stages": done,
    }
    run.store.write_bytes(distill_record_key(run.name), json.dumps(record, indent=2).encode())
    log.info("student distilled: %.0f env steps -> %s", env_steps, record["checkpoint"])
    return record


# ---------------------------------------------------------------- evaluation


def evaluate_student(
    run: Run,
    state: PECState,
    designs: Sequence[Design],
    stem: str,
    runner: JobRunner,
    *,
    num_episodes: int,
    start_difficulty: int,
    score: ScoreName | None = None,
) -> dict[str, Any]:
    """The student on a designs set, same protocol and seed as the experts (reused if done)."""
    record = read_distill_record(run)
    job_id = student_job_id(state)
    spec = single_policy_spec(
        run, state, job_id, record, designs, stem, num_episodes, start_difficulty, score
    )
    missing = (
        f"run '{run.name}' has no distilled student "
        f"({run.store.uri(distill_record_key(run.name))}); run `pec distill` first"
    )
    key = student_eval_key(run.name, stem)
    return evaluate_single_policy(
        run, spec, designs, key, runner, "student", "the student", missing
    )


def read_student_eval(run: Run, stem: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(run.store.read_bytes(student_eval_key(run.name, stem))))
    except NotFoundError:
        return None
