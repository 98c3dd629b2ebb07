"""Step 2: the frontier's candidates, every expert's evaluation job on them, and scores.json.

The candidates are recomputed deterministically (`pec.maths.frontier`) and written once;
scores.json holds per expert the F final levels (null when it could not be evaluated) and the
protocol they were measured under, so a stored one is reused only under the same protocol.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np

from pec.errors import InputError, StateError
from pec.faults import fault_point
from pec.iteration.job_inputs import checkpoint_exists, job_settings, spec_axes
from pec.jobs.spec import EvalJobSpec, design_row
from pec.maths.frontier import CandidateSelection, effective_mode, select_candidates
from pec.maths.protocols import describe, same_protocol
from pec.maths.seeds import derive_seed
from pec.runs import layout, run_records
from pec.runs.run import Run
from pec.runs.state import PECState

log = logging.getLogger(__name__)


def design_fields(keys: tuple[str, ...], values: Any) -> dict[str, float]:
    """{"GCR": g, "spcf": s(, "leg": l)} of one design, in column order."""
    return {key: float(v) for key, v in zip(keys, values, strict=True)}


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


def scores_width(scores: dict[str, Any]) -> int:
    """F of a stored scores.json: the length of its first non-null row (0 when it has none)."""
    rows = scores.get("scores")
    if isinstance(rows, list):
        for row in rows:
            if isinstance(row, list):
                return len(row)
    return 0
