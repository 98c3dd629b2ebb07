"""A run's start: its state seeded (the K Gaussians) and the preflight of an iteration.

`initialise_run` loads the run's state or seeds and writes it (one of the three writers of
pec_state.json, with the crash rule's commit in `pec.iteration.driver` and
`pec.iteration.refit.refit_iteration`, each a conditional write against the version it
read, so a second writer fails loudly). `preflight` refuses, before anything is written,
inputs an iteration would only trip over later (a warm-start checkpoint that is not a sound
torch archive, unreadable scores).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pec.backends.registry import check_design_axes, get_backend
from pec.iteration.coverage import coverage_seed, stop_reason
from pec.iteration.frontier import read_scores, score_matrix, scores_width
from pec.maths.init import initialise_gaussians
from pec.runs.checkpoints import check_checkpoint
from pec.runs.run import Run, check_compatible
from pec.runs.state import SCHEMA_VERSION, ExpertState, PECState
from pec.runs.state_io import load_state, save_state


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
            sigma=diagonal_covariance(init.variances[k]),
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


def diagonal_covariance(variance: np.ndarray) -> list[list[float]]:
    """The d x d diagonal covariance the state stores, from d variances."""
    d = len(variance)
    return [[float(variance[i]) if i == j else 0.0 for j in range(d)] for i in range(d)]


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
            score_matrix(scores, len(state.experts), scores_width(scores))


def check_warm_start(run: Run, state: PECState, expert_id: int) -> None:
    """The checkpoint expert ``expert_id`` warm-starts from must be a sound torch archive
    that loads with ``weights_only=True`` (a pickle naming arbitrary callables does not)."""
    expert = state.experts[expert_id]
    if state.iteration == 0 or expert.checkpoint is None:
        return
    what = f"expert {expert.id}'s checkpoint {expert.checkpoint}"
    check_checkpoint(run.store, run.name, expert.checkpoint, what)
