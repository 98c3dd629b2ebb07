"""Step 3: the refit, the iteration's one state write.

`refit_iteration` snapshots the experts, assigns every frontier candidate to the expert that
scored best and refits the Gaussians (`pec.maths.refit`), records the coverage and the
budget, writes assignments.json and then pec_state.json once (iteration += 1), conditionally
on the version it read.
"""

from __future__ import annotations

import json

import numpy as np

from pec.errors import StateError
from pec.faults import fault_point
from pec.iteration.budget import records_budget, training_budget
from pec.iteration.coverage import state_coverage
from pec.iteration.frontier import design_fields, read_candidates, read_scores, score_matrix
from pec.iteration.run_setup import diagonal_covariance
from pec.iteration.training import trained_dl
from pec.maths.refit import assign_winners, refit_experts
from pec.runs import layout
from pec.runs.run import Run
from pec.runs.state import CoverageRecord, ExpertSnapshot, HistoryEntry, PECState
from pec.runs.state_io import save_state


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
                dl=trained_dl(run, e.id, iteration),
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
                "sigma": diagonal_covariance(fit.variance),
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
