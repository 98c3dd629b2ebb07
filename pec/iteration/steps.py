"""The steps of one PEC iteration, each reading its inputs from the store and writing its outputs.

`pec.iteration.driver` chains them into one iteration (and the step commands call them one by one);
neither does maths nor I/O of its own. Only `initialise_run`, the crash rule's commit
(`pec.iteration.driver`) and `refit_iteration` write pec_state.json, always with a conditional write
against the version they read, so a second writer fails loudly.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from pec.backends.registry import check_design_axes, get_backend
from pec.errors import InputError, StateError
from pec.faults import fault_point
from pec.jobs.spec import EvalJobSpec, TrainJobResult, TrainJobSpec, design_row
from pec.maths.budget import budget_by_share, budget_by_wins, trunk_split, won_counts
from pec.maths.coverage import coverage as mc_coverage
from pec.maths.curriculum import starting_level
from pec.maths.design_space import DEFAULT_AXES
from pec.maths.frontier import CandidateSelection, effective_mode, select_candidates
from pec.maths.init import initialise_gaussians, sample_designs
from pec.maths.protocols import describe, same_protocol
from pec.maths.refit import assign_winners, refit_experts
from pec.maths.seeds import derive_seed
from pec.runs import layout, run_records
from pec.runs.checkpoints import check_checkpoint
from pec.runs.config import PECConfig
from pec.runs.run import Run, check_compatible
from pec.runs.state import (
    SCHEMA_VERSION,
    BudgetRecord,
    CoverageRecord,
    ExpertSnapshot,
    ExpertState,
    HistoryEntry,
    PECState,
)
from pec.runs.state_io import load_state, save_state
from pec.runs.store.npy import npy_bytes

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- state


def initialise_run(
    run: Run, check: Callable[[PECState], None] | None = None
) -> tuple[PECState, str, bool]:
    """Load the run's state, or seed the K Gaussians and write it. Returns (state, version, created).

    `check` sees a new state before it is written (a caller's preflight), so a run whose
    inputs are refused leaves nothing behind.
    """
    loaded = load_state(run.store, run.name)
    if loaded is not None:
        state, version = loaded
        check_compatible(run.config, state)
        return state, version, False
    cfg = run.config
    init = initialise_gaussians(
        cfg.K,
        run.space,
        n_init=cfg.N_init,
        sigma_scale=cfg.sigma_scale,
        seed=cfg.effective_init_seed,
        strategy=cfg.init_strategy,
        centers=np.asarray(cfg.centers, dtype=float) if cfg.centers is not None else None,
        init_pool_size=cfg.init_pool_size,
        lloyd_iterations=cfg.lloyd_iterations,
        init_jitter_scale=cfg.init_jitter_scale,
        init_anchor_region=cfg.init_anchor_region,
        target_init_coverage=cfg.target_init_coverage,
        coverage_seed=coverage_seed(cfg),
    )
    experts = [
        ExpertState(
            id=k,
            mu=[float(v) for v in init.centers[k]],
            sigma=_diag(init.variances[k]),
            designs=[[float(v) for v in row] for row in init.designs[k]],
        )
        for k in range(cfg.K)
    ]
    state = PECState(
        schema_version=SCHEMA_VERSION,
        run_name=run.name,
        iteration=0,
        usd_rel_path=cfg.usd_rel_path,
        design_space=run.space.as_mapping(),
        experts=experts,
        history=[],
        init_strategy=init.strategy,
        init_seed=init.seed,
        init_sigma_scale=init.sigma_scale,
        init_target_coverage=init.target_coverage,
        init_realized_coverage=init.realized_coverage,
        config_hash=cfg.content_hash(),
        coverage=[],
        coverage_seed=coverage_seed(cfg),
    )
    if check is not None:
        check(state)
    version = save_state(run.store, state, expected_version=None, previous=None)
    return state, version, True


def coverage_seed(config: PECConfig) -> int:
    """One seeded Monte-Carlo point set for init, refit and stopping (PEC_DETAILS: do better)."""
    return derive_seed(config.seed, "coverage")


def state_coverage(run: Run, state: PECState) -> float:
    """Coverage on the run's recorded Monte-Carlo point set (the config's for older runs)."""
    seed = state.coverage_seed if state.coverage_seed is not None else coverage_seed(run.config)
    return mc_coverage(state.expert_mus(), state.expert_variances(), run.space, seed=seed)


def _diag(variance: np.ndarray) -> list[list[float]]:
    """The d x d diagonal covariance the state stores, from d variances."""
    d = len(variance)
    return [[float(variance[i]) if i == j else 0.0 for j in range(d)] for i in range(d)]


# ---------------------------------------------------------------- preflight


def preflight(run: Run, state: PECState) -> None:
    """Refuse, before anything is written, inputs the iteration would only trip over later.

    Every checkpoint the next training warm-starts from must exist and be a complete torch
    archive (a truncated or overwritten file fails here, not inside a job after the samples
    were written), and the previous iteration's scores, which set each expert's starting
    level, must be finite. Checkpoints are loaded here the way jobs load them
    (``weights_only=True``), so a file whose pickle names arbitrary callables is refused
    before a job meets it.
    """
    if stop_reason(run.config, state) is not None:
        return
    check_design_axes(run.config.backend, run.space.axes)
    if run.config.executor in ("inprocess", "subprocess"):
        # the jobs run on this machine: what the backend needs here is known now, not per job
        backend = get_backend(run.config.backend)
        backend.check_host(dict(run.config.backend_settings), run.config.effective_device)
    for expert in state.experts:
        check_warm_start(run, state, expert.id)
    trunk = state.trunk
    if state.iteration == 0 and trunk is not None and trunk.checkpoint is not None:
        check_checkpoint(
            run.store, run.name, trunk.checkpoint, f"the trunk's checkpoint {trunk.checkpoint}"
        )
    if state.iteration > 0:
        scores = read_scores(run, state.iteration - 1)
        if scores is not None:
            score_matrix(scores, len(state.experts), _scores_width(scores))


def check_warm_start(run: Run, state: PECState, expert_id: int) -> None:
    """The checkpoint expert ``expert_id`` warm-starts from must be a sound torch archive
    that loads with ``weights_only=True`` (a pickle naming arbitrary callables does not)."""
    expert = state.experts[expert_id]
    if state.iteration == 0 or expert.checkpoint is None:
        return
    what = f"expert {expert.id}'s checkpoint {expert.checkpoint}"
    check_checkpoint(run.store, run.name, expert.checkpoint, what)


def _scores_width(scores: dict[str, Any]) -> int:
    rows = scores.get("scores")
    if isinstance(rows, list):
        for row in rows:
            if isinstance(row, list):
                return len(row)
    return 0


# ---------------------------------------------------------------- step 1: training


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
    samples = sample_designs(
        np.asarray(expert.mu, dtype=float),
        np.asarray([expert.sigma[i][i] for i in range(state.dim)], dtype=float),
        run.config.effective_num_envs,
        run.space,
        rng,
    ).astype(np.float32)
    return tuple(samples[:, a].copy() for a in range(samples.shape[1]))


def job_settings(run: Run, state: PECState) -> dict[str, Any]:
    """Backend settings of a job: the config's `backend_settings`, validated by the backend,
    with the config's `task` as `task.terrain` when set.

    Both backends build the robot from pec's own model, so nothing else is added here.
    """
    return run.config.job_backend_settings


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
    gcr_key, spcf_key = layout.samples_keys(run.name, expert_id, iteration)
    run.store.write_bytes(gcr_key, npy_bytes(columns[0]))
    run.store.write_bytes(spcf_key, npy_bytes(columns[1]))
    leg_key = None
    if len(columns) == 3:
        leg_key = layout.leg_samples_key(run.name, expert_id, iteration)
        run.store.write_bytes(leg_key, npy_bytes(columns[2]))
    return TrainJobSpec(
        kind="train",
        backend=cfg.backend,
        store=run.store_spec,
        run_name=run.name,
        expert_id=expert_id,
        iteration=iteration,
        samples_gcr_key=gcr_key,
        samples_spcf_key=spcf_key,
        samples_leg_key=leg_key,
        axes=spec_axes(run),
        start_level=starting_level_for(run, iteration, expert_id),
        max_iterations=iterations,
        num_envs=cfg.effective_num_envs,
        seed=derive_seed(cfg.seed, "train", expert_id, iteration),
        device=cfg.effective_device,
        resume_checkpoint_uri=resume,
        settings=job_settings(run, state),
        timeout_s=cfg.train_timeout_h * 3600.0,
        threads=cfg.job_threads(cfg.experts_in_flight),
    )


def spec_axes(run: Run) -> list[str] | None:
    """The design axes a job spec names: None for 2-D (the spec as it always was)."""
    axes = run.space.axes
    return None if axes == DEFAULT_AXES else list(axes)


def design_fields(keys: tuple[str, ...], values: Any) -> dict[str, float]:
    """{"GCR": g, "spcf": s(, "leg": l)} of one design, in column order."""
    return {key: float(v) for key, v in zip(keys, values, strict=True)}


# ---------------------------------------------------------------- budgets and the trunk


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


def trunk_plan(run: Run) -> tuple[int, int]:
    """(the trunk's PPO iterations, each expert's at iteration 0); (0, ...) without a trunk."""
    cfg = run.config
    return trunk_split(cfg.K, cfg.max_iterations_iter0, cfg.trunk_share)


def wins_of(run: Run, state: PECState, iteration: int) -> list[int] | None:
    """Frontier candidates each expert won outright at `iteration` (`won_counts`: ties are
    nobody's), None when that iteration has no scores."""
    if iteration < 0:
        return None
    scores = read_scores(run, iteration)
    if scores is None:
        return None
    return won_counts(score_matrix(scores, len(state.experts), _scores_width(scores)))


def training_budget(run: Run, state: PECState) -> BudgetRecord:
    """PPO iterations per expert at the state's iteration, and the rule that set them.

    Iteration 0: `max_iterations_iter0` each, or what the trunk leaves them (rule "trunk").
    Later: `max_iterations` each (rule "equal"), or with `budget_rule: wins` / `proportional`
    the split of `pec.maths.budget.budget_by_wins` / `budget_by_share` on the outright wins of
    the previous iteration's frontier.
    """
    cfg = run.config
    K = len(state.experts)
    iteration = state.iteration
    if iteration == 0:
        trunk, per_expert = trunk_plan(run)
        rule = "trunk" if trunk > 0 else "equal"
        return BudgetRecord(iteration=0, rule=rule, ppo_iterations=[per_expert] * K)
    if cfg.budget_rule == "equal":
        return BudgetRecord(
            iteration=iteration, rule="equal", ppo_iterations=[cfg.max_iterations] * K
        )
    won = wins_of(run, state, iteration - 1)
    split_by = budget_by_wins if cfg.budget_rule == "wins" else budget_by_share
    split = [cfg.max_iterations] * K if won is None else split_by(won, cfg.max_iterations)
    return BudgetRecord(
        iteration=iteration, rule=cfg.budget_rule, ppo_iterations=split, won_counts=won
    )


def records_budget(run: Run, budget: BudgetRecord) -> bool:
    """Whether the state records this budget: in runs with a trunk or `budget_rule: wins`
    (runs with neither keep the original's equal split and their state files as before)."""
    return budget.rule != "equal" or run.config.budget_rule != "equal" or trunk_plan(run)[0] > 0


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
    rng = np.random.default_rng(derive_seed(run.config.seed, "trunk-samples"))
    points = run.space.sample_uniform(num_envs, rng).astype(np.float32)
    return tuple(points[:, a].copy() for a in range(points.shape[1]))


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
    gcr_key, spcf_key = layout.trunk_samples_keys(run.name)
    run.store.write_bytes(gcr_key, npy_bytes(columns[0]))
    run.store.write_bytes(spcf_key, npy_bytes(columns[1]))
    leg_key = None
    if len(columns) == 3:
        leg_key = layout.trunk_leg_samples_key(run.name)
        run.store.write_bytes(leg_key, npy_bytes(columns[2]))
    return TrainJobSpec(
        kind="train",
        backend=cfg.backend,
        store=run.store_spec,
        run_name=run.name,
        expert_id=len(state.experts),
        iteration=0,
        role="trunk",
        samples_gcr_key=gcr_key,
        samples_spcf_key=spcf_key,
        samples_leg_key=leg_key,
        axes=spec_axes(run),
        start_level=cfg.dl_initial,
        max_iterations=iterations,
        num_envs=cfg.effective_num_envs,
        seed=derive_seed(cfg.seed, "trunk"),
        device=cfg.effective_device,
        settings=job_settings(run, state),
        timeout_s=cfg.train_timeout_h * 3600.0,
        threads=cfg.job_threads(1),
    )


def read_trunk_result(run: Run) -> TrainJobResult | None:
    """The trunk's finished training whose checkpoint still exists, else None."""
    key = layout.trunk_dir(run.name) + "result.json"
    result = run_records.read_train_result_at(run.store, key)
    if result is None or not checkpoint_exists(run, result.checkpoint_uri):
        return None
    return result


def _trained_dl(run: Run, expert_id: int, iteration: int) -> int | None:
    """The starting level (dl) the expert's training of ``iteration`` used, from its result."""
    return run_records.read_train_dl(run.store, run.name, expert_id, iteration)


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


def checkpoint_exists(run: Run, uri: str | None) -> bool:
    if uri is None:
        return False
    try:
        return run.store.exists(run.store.key_for_uri(uri))
    except Exception:  # a URI of another store cannot be checked from here
        return False


# ---------------------------------------------------------------- step 2: frontier evaluation


def frontier_candidates(run: Run, state: PECState) -> CandidateSelection:
    """The F candidates of this iteration (recomputed deterministically; written once)."""
    cfg = run.config
    iteration = state.iteration
    mode = effective_mode(cfg.sampling_mode, iteration, cfg.auto_switch_iter)
    selection = select_candidates(
        state.expert_mus(),
        state.expert_variances(),
        run.space,
        F=cfg.F,
        pool_factor=cfg.pool_factor,
        mode=mode,
        border_inner_ld=cfg.border_inner_ld,
        border_outer_ld=cfg.border_outer_ld,
        seed=derive_seed(cfg.seed, "frontier", iteration),
    )
    key = layout.candidates_key(run.name, iteration)
    payload = {
        "iteration": iteration,
        "mode": selection.mode,
        "band_count": selection.band_count,
        "pool_size": selection.pool_size,
        "candidates": [
            {"id": i, **design_fields(run.space.keys, d), "max_log_density": float(ld)}
            for i, (d, ld) in enumerate(
                zip(selection.designs, selection.max_log_density, strict=True)
            )
        ],
    }
    run.store.write_bytes(key, json.dumps(payload, indent=2).encode())
    return selection


def prepare_evaluation(
    run: Run, state: PECState, expert_id: int, candidates: np.ndarray
) -> EvalJobSpec | None:
    """The expert's frontier job, or None when it has no checkpoint to evaluate."""
    expert = state.experts[expert_id]
    if not checkpoint_exists(run, expert.checkpoint):
        return None
    assert expert.checkpoint is not None
    cfg = run.config
    return EvalJobSpec(
        kind="eval",
        backend=cfg.backend,
        store=run.store_spec,
        run_name=run.name,
        expert_id=expert_id,
        iteration=state.iteration,
        checkpoint_uri=expert.checkpoint,
        designs=[design_row(row) for row in candidates],
        axes=spec_axes(run),
        num_episodes=cfg.num_episodes,
        start_difficulty=cfg.start_difficulty,
        score=cfg.score,
        search_max_level=cfg.search_max_level,
        seed=derive_seed(cfg.seed, "eval", expert_id, state.iteration),
        device=cfg.effective_device,
        settings=job_settings(run, state),
        timeout_s=cfg.eval_timeout_h * 3600.0,
        threads=cfg.job_threads(cfg.experts_in_flight),
        result_key=layout.expert_frontier_results_key(run.name, state.iteration, expert_id),
    )


def validate_levels(levels: list[int], expected: int, who: str) -> list[int]:
    """``expected`` integer levels in [0, 74]; booleans, fractions and NaN are refused."""
    return run_records.check_levels(levels, expected, who)


def frontier_protocol(run: Run) -> dict[str, Any]:
    """How this run's frontier is scored, as scores.json records it: the protocol with its
    own settings and ceiling (`describe`), the run's seed (every expert's evaluation seed
    derives from it) and the backend. A stored scores.json is reused only under it."""
    cfg = run.config
    return describe(
        cfg.score,
        cfg.num_episodes,
        cfg.start_difficulty,
        cfg.search_max_level,
        seed=cfg.seed,
        backend=cfg.backend,
    )


def reusable_scores(run: Run, iteration: int) -> dict[str, Any] | None:
    """scores.json of `iteration` if it was measured under the run's frontier protocol.

    Under level_search, changing num_episodes / start_difficulty keeps it (they are unused);
    changing the protocol, search_max_level, the seed or the backend evaluates again.
    """
    existing = read_scores(run, iteration)
    if existing is None:
        return None
    if not same_protocol(existing.get("protocol"), frontier_protocol(run)):
        log.warning(
            "iteration %d: scores.json was measured under another protocol (%s); evaluating "
            "the frontier again",
            iteration,
            existing.get("protocol"),
        )
        return None
    return existing


def write_scores(
    run: Run, state: PECState, selection: CandidateSelection, levels: dict[int, list[int] | None]
) -> dict[str, Any]:
    """scores.json: per expert the F final levels (null when it could not be evaluated)."""
    F = len(selection.designs)
    rows: list[list[int] | None] = []
    for k in range(len(state.experts)):
        row = levels.get(k)
        rows.append(None if row is None else validate_levels(row, F, f"expert {k}"))
    if all(row is None for row in rows):
        raise InputError("scores: no expert could be evaluated; train at least one expert first")
    payload: dict[str, Any] = {
        "iteration": state.iteration,
        "scores": rows,
        "protocol": {
            **frontier_protocol(run),
            "F": F,
            "K": len(state.experts),
            "sampling_mode": selection.mode,
            "band_count": selection.band_count,
        },
    }
    run.store.write_bytes(
        layout.scores_key(run.name, state.iteration), json.dumps(payload, indent=2).encode()
    )
    fault_point("scores-written")
    return payload


def read_scores(run: Run, iteration: int) -> dict[str, Any] | None:
    return run_records.read_scores(run.store, run.name, iteration)


def read_candidates(run: Run, iteration: int) -> np.ndarray:
    candidates = run_records.read_candidates(run.store, run.name, iteration, run.space.keys)
    if candidates is None:
        key = layout.candidates_key(run.name, iteration)
        raise StateError(
            f"iteration {iteration} has no frontier candidates ({run.store.uri(key)}); "
            "run `pec evaluate-frontier` first"
        )
    return candidates


def score_matrix(scores: dict[str, Any], K: int, F: int) -> np.ndarray:
    """(K, F) float matrix, NaN for an expert that was not evaluated; shape-checked."""
    rows = scores.get("scores")
    if not isinstance(rows, list) or len(rows) != K:
        raise InputError(
            f"scores: expected a list of K={K} rows, got {type(rows).__name__} of length {len(rows) if isinstance(rows, list) else '-'}"
        )
    matrix = np.full((K, F), np.nan)
    for k, row in enumerate(rows):
        if row is None:
            continue
        matrix[k] = np.asarray(validate_levels(row, F, f"scores of expert {k}"), dtype=float)
    if np.isnan(matrix).all():
        raise InputError("scores: every expert's row is null; nothing to refit from")
    return matrix


# ---------------------------------------------------------------- step 3: refit


def refit_iteration(
    run: Run,
    state: PECState,
    version: str,
    previous: PECState | None = None,
) -> tuple[PECState, str]:
    """Snapshot, assign the frontier to winners, refit, iteration += 1, write the state once."""
    cfg = run.config
    iteration = state.iteration
    candidates = read_candidates(run, iteration)
    scores = read_scores(run, iteration)
    if scores is None:
        raise StateError(
            f"iteration {iteration} has no scores.json; run `pec evaluate-frontier` first"
        )
    K = len(state.experts)
    matrix = score_matrix(scores, K, len(candidates))
    coverage_before = state_coverage(run, state)
    snapshot = HistoryEntry(
        iteration=iteration,
        experts_snapshot=[
            ExpertSnapshot(
                id=e.id,
                mu=list(e.mu),
                sigma=[list(r) for r in e.sigma],
                checkpoint=e.checkpoint,
                n_designs=len(e.designs),
                dl=_trained_dl(run, e.id, iteration),
            )
            for e in state.experts
        ],
        coverage_before=coverage_before,
    )
    result = refit_experts(
        state.expert_mus(),
        state.expert_variances(),
        [state.designs_array(k) for k in range(K)],
        candidates,
        matrix,
        run.space,
        min_var_scale=cfg.min_var_scale,
        min_designs=cfg.min_designs,
    )
    experts = [
        e.model_copy(
            update={
                "mu": [float(v) for v in fit.mu],
                "sigma": _diag(fit.variance),
                "designs": [[float(v) for v in row] for row in fit.designs],
            }
        )
        for e, fit in zip(state.experts, result.experts, strict=True)
    ]
    budgets = list(state.budgets)
    budget = training_budget(run, state)
    if records_budget(run, budget) and all(b.iteration != iteration for b in budgets):
        budgets.append(budget)
    refitted = state.model_copy(
        update={
            "experts": experts,
            "history": [*state.history, snapshot],
            "iteration": iteration + 1,
            "budgets": budgets,
        }
    )
    after = state_coverage(run, refitted)
    refitted = refitted.model_copy(
        update={"coverage": [*state.coverage, CoverageRecord(iteration=iteration, coverage=after)]}
    )
    winners = assign_winners(matrix)
    all_zero = [bool(np.nanmax(matrix[:, i]) == 0) for i in range(matrix.shape[1])]
    assignments = {
        "iteration": iteration,
        "rule": "argmax over experts; ties go to the lower expert id (so an all-zero candidate goes to the lowest evaluated id)",
        "candidates": [
            {
                "id": i,
                **design_fields(run.space.keys, candidates[i]),
                "winner": int(winners[i]),
                "scores": [None if np.isnan(v) else int(v) for v in matrix[:, i]],
                "all_zero": all_zero[i],
            }
            for i in range(len(candidates))
        ],
        "won_counts": list(result.won_counts),
        "refitted": [bool(fit.refitted) for fit in result.experts],
        "coverage_before": coverage_before,
        "coverage_after": after,
    }
    run.store.write_bytes(
        layout.assignments_key(run.name, iteration), json.dumps(assignments, indent=2).encode()
    )
    fault_point("refit-assignments-written")
    new_version = save_state(
        run.store, refitted, expected_version=version, previous=previous or state
    )
    return refitted, new_version


# ---------------------------------------------------------------- stopping


def latest_coverage(state: PECState) -> float | None:
    return state.coverage[-1].coverage if state.coverage else None


def stop_reason(config: PECConfig, state: PECState) -> str | None:
    """Why the run is finished, or None if another iteration should run."""
    if state.iteration >= config.max_pec_iterations:
        return f"reached max_pec_iterations={config.max_pec_iterations}"
    cov = latest_coverage(state)
    if cov is not None and cov >= config.coverage_target:
        return f"coverage {cov:.3f} reached coverage_target={config.coverage_target}"
    return None
