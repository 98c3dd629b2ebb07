"""A run's score evidence: every frontier and final evaluation it has, read from the store.

Feeds the score-informed router (`pec.maths.score_routing`); the maths stays there, this module
only reads `frontier_evals/iter_N/{candidates,scores}.json` and
`final_eval/<stem>/summary.json`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pec.errors import InputError, NotFoundError
from pec.maths.design_space import DesignSpace, IntArray
from pec.maths.routing import route
from pec.maths.score_routing import ScoreEvidence, check_router, evidence_from, route_by_scores
from pec.runs import layout
from pec.runs.state import PECState
from pec.runs.store import Store

log = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"


def _read_json(store: Store, key: str) -> Any:
    try:
        return json.loads(store.read_bytes(key))
    except NotFoundError:
        return None
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s is unreadable; not used as routing evidence", store.uri(key))
        return None


def run_evidence(
    store: Store, run_name: str, K: int, iterations: int, exclude_stem: str | None = None
) -> ScoreEvidence:
    """Frontier evaluations of iterations 0..iterations and every final evaluation's scores.

    `exclude_stem` leaves one final evaluation out, so a report on that designs set scores a
    router that never saw those very scores (otherwise it would just copy the oracle).
    """
    parts: list[tuple[ArrayLike, list[Any]]] = []
    for iteration in range(iterations + 1):
        scores = _read_json(store, layout.scores_key(run_name, iteration))
        candidates = _read_json(store, layout.candidates_key(run_name, iteration))
        if not isinstance(scores, dict) or not isinstance(candidates, dict):
            continue
        designs = [_row(c) for c in candidates.get("candidates", [])]
        rows = scores.get("scores")
        if isinstance(rows, list) and len(rows) == K and designs:
            parts.append((designs, rows))
    prefix = layout.run_prefix(run_name) + "final_eval/"
    for key in store.list(prefix):
        stem = key[len(prefix) :].removesuffix("/" + SUMMARY_NAME)
        if not key.endswith("/" + SUMMARY_NAME) or "/" in stem or stem == exclude_stem:
            continue
        summary = _read_json(store, key)
        if not isinstance(summary, dict):
            continue
        designs = [_row(d) for d in summary.get("designs", [])]
        rows = summary.get("scores")
        if isinstance(rows, list) and len(rows) == K and designs:
            parts.append((designs, rows))
    # every stored design of a run has the run's axes
    dim = int(np.asarray(parts[0][0], dtype=np.float64).shape[1]) if parts else 2
    try:
        return evidence_from(parts, K, dim)
    except InputError as exc:
        raise InputError(f"run '{run_name}': routing evidence is inconsistent: {exc}") from None


def _row(design: dict[str, Any]) -> list[Any]:
    """[GCR, spcf] or [GCR, spcf, leg] of a stored candidate or design."""
    return [design["GCR"], design["spcf"]] + ([design["leg"]] if "leg" in design else [])


def route_designs(
    points: ArrayLike,
    state: PECState,
    space: DesignSpace,
    router: str,
    evidence: ScoreEvidence | None,
) -> IntArray:
    """Expert per design with the named router (`nearest_centre` or `score_informed`)."""
    check_router(router)
    if router == "nearest_centre" or evidence is None:
        return route(points, state.expert_mus(), space)
    return route_by_scores(points, evidence, state.expert_mus(), space)


def router_evidence_size(evidence: ScoreEvidence) -> int:
    """Evaluated designs with at least one score (what the router learned from)."""
    return int(np.sum(~np.all(np.isnan(evidence.scores), axis=1))) if evidence.size else 0
