"""summary.json of a final evaluation: the experts' score matrix on a designs set and what it says.

`write_summary` turns the experts' levels into the summary (`pec.evaluation.score_summary`),
adds the score-informed router's picks (learned from every other evaluation of the run) and
writes it under ``final_eval/<designs_stem>/``; `read_summary` reads one back with every field
later steps use checked, and `summary_from_payload` recomputes the numbers from its score
matrix, never from its derived fields.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from pec.errors import InputError, NotFoundError, StateError
from pec.evaluation.designs_file import Design
from pec.evaluation.evidence import router_evidence_size, run_evidence
from pec.evaluation.final_eval_jobs import eval_seed
from pec.evaluation.score_summary import ScoreSummary, summarise_scores
from pec.maths.design_space import DesignSpace, FloatArray
from pec.maths.protocols import ScoreName, describe
from pec.maths.score_routing import DEFAULT_NEIGHBOURS, ScoreEvidence, route_by_scores
from pec.runs import layout
from pec.runs.run import Run
from pec.runs.state import PECState
from pec.runs.store import Store

SUMMARY_VERSION = 1


def designs_array(designs: Sequence[Design]) -> FloatArray:
    width = len(designs[0].values()) if designs else 2
    return np.asarray([d.values() for d in designs], dtype=np.float64).reshape(-1, width)


def summary_payload(
    *,
    run_name: str,
    iteration: int,
    designs_stem: str,
    designs: Sequence[Design],
    protocol: dict[str, Any],
    mus: FloatArray,
    checkpoints: Sequence[str | None],
    summary: ScoreSummary,
    space: DesignSpace,
) -> dict[str, Any]:
    """summary.json: the reference sheet's score matrix and oracle, plus the routed scores."""
    K = summary.scores.shape[0]
    return {
        "version": SUMMARY_VERSION,
        "run": run_name,
        "iteration": iteration,
        "designs_stem": designs_stem,
        "K": K,
        "design_space": space.as_mapping(),
        "protocol": dict(protocol),
        "designs": [d.model_dump() for d in designs],
        "experts": [
            {
                "id": k,
                "mu": [float(v) for v in mus[k]],
                "checkpoint": checkpoints[k],
                "evaluated": k in summary.evaluated,
            }
            for k in range(K)
        ],
        "scores": [
            None if k not in summary.evaluated else [int(v) for v in summary.scores[k]]
            for k in range(K)
        ],
        "expert_means": summary.expert_means(),
        "oracle": [int(v) for v in summary.oracle],
        "oracle_expert": [int(v) for v in summary.oracle_expert],
        "oracle_mean": summary.oracle_mean,
        "routed": [int(v) for v in summary.routed],
        "routed_expert": [int(v) for v in summary.routed_expert],
        "routed_mean": summary.routed_mean,
        "routed_hits": summary.routed_hits,
        "rules": {
            "oracle": "max over evaluated experts; the oracle expert is the lowest id on ties",
            "routed": f"nearest centre ({_axes_phrase(space)} normalised to [0, 1]) among "
            "evaluated experts; ties to the lower id",
        },
    }


def _axes_phrase(space: DesignSpace) -> str:
    """How the routed rule names the axes: "both axes" in 2-D (as summaries always said)."""
    return "both axes" if space.dim == 2 else f"all {space.dim} axes"


def payload_space(payload: dict[str, Any]) -> DesignSpace:
    return DesignSpace.from_bounds(payload["design_space"])


def summary_from_payload(payload: dict[str, Any]) -> ScoreSummary:
    """Recompute the summary from a stored summary.json (plots never trust derived fields)."""
    space = payload_space(payload)
    rows = payload["scores"]
    N = len(payload["designs"])
    matrix = np.full((len(rows), N), np.nan)
    for k, row in enumerate(rows):
        if row is not None:
            matrix[k] = np.asarray(row, dtype=np.float64)
    keys = space.keys
    designs = np.asarray([[d[k] for k in keys] for d in payload["designs"]], dtype=np.float64)
    mus = np.asarray([e["mu"] for e in payload["experts"]], dtype=np.float64)
    return summarise_scores(matrix, designs, mus, space)


def write_summary(
    run: Run,
    state: PECState,
    designs: Sequence[Design],
    stem: str,
    levels: dict[int, list[int] | None],
    num_episodes: int,
    start_difficulty: int,
    score: ScoreName | None = None,
) -> dict[str, Any]:
    """Summarise the experts' levels and write summary.json; returns the payload.

    `score`: the protocol the levels were measured with (None: the run's configured one)."""
    K = len(state.experts)
    matrix = np.full((K, len(designs)), np.nan)
    for k in range(K):
        row = levels.get(k)
        if row is not None:
            if len(row) != len(designs):
                raise InputError(f"expert {k}: {len(row)} levels for {len(designs)} designs")
            matrix[k] = np.asarray(row, dtype=np.float64)
    if np.isnan(matrix).all():
        raise StateError(
            f"run '{run.name}': no expert could be evaluated; train the experts first (`pec run`)"
        )
    mus = state.expert_mus()
    summary = summarise_scores(matrix, designs_array(designs), mus, run.space)
    payload = summary_payload(
        run_name=run.name,
        iteration=state.iteration,
        designs_stem=stem,
        designs=designs,
        protocol=describe(
            run.config.score if score is None else score,
            num_episodes,
            start_difficulty,
            run.config.search_max_level,
            seed=eval_seed(run, stem),
            backend=run.config.backend,
        ),
        mus=mus,
        checkpoints=[e.checkpoint for e in state.experts],
        summary=summary,
        space=run.space,
    )
    payload.update(score_routed_payload(run, state, designs, stem, summary))
    key = layout.final_eval_summary_key(run.name, stem)
    run.store.write_bytes(key, json.dumps(payload, indent=1).encode())
    return payload


def score_routed_payload(
    run: Run, state: PECState, designs: Sequence[Design], stem: str, summary: ScoreSummary
) -> dict[str, Any]:
    """The score-informed router's picks and scores, learned from every other evaluation.

    Its evidence is the run's frontier evaluations and final evaluations on other designs
    sets: never the scores of this designs set, which would turn it into the oracle.
    """
    K = summary.scores.shape[0]
    evidence = run_evidence(run.store, run.name, K, state.iteration, exclude_stem=stem)
    ids = np.asarray(summary.evaluated, dtype=np.int64)  # a bundle holds evaluated experts only
    usable = ScoreEvidence(evidence.designs, evidence.scores[:, ids])
    points = designs_array(designs)
    experts = ids[route_by_scores(points, usable, state.expert_mus()[ids], run.space)]
    scores = summary.scores[experts, np.arange(len(designs))]
    return {
        "score_routed": [int(v) for v in scores],
        "score_routed_expert": [int(v) for v in experts],
        "score_routed_mean": float(np.mean(scores)),
        "score_router": {
            "rule": "inverse-distance weighted scores of the nearest evaluated designs "
            f"(k={DEFAULT_NEIGHBOURS}, normalised space); ties and no evidence -> nearest centre",
            "evidence_designs": router_evidence_size(usable),
            "excluded_designs_set": stem,
        },
    }


def check_summary(data: Any, source: str) -> dict[str, Any]:
    """A stored summary.json with every field later steps use checked (one StateError line)."""
    from pec.evaluation.designs_file import parse_designs
    from pec.runs.run_records import check_levels
    from pec.runs.safe_io import expect_mapping

    payload = expect_mapping(
        data, source, StateError, "run", "designs_stem", "design_space", "designs", "experts"
    )
    expect_mapping(payload, source, StateError, "scores", "oracle_mean", "routed_mean")
    try:
        designs = parse_designs(payload["designs"], f"{source}: designs")
    except InputError as exc:
        raise StateError(str(exc)) from None
    box = payload["design_space"]
    if not (isinstance(box, dict) and all(_is_pair(box.get(name)) for name in ("GCR", "spcf"))):
        raise StateError(f"{source}: design_space must hold GCR and spcf [lo, hi] pairs")
    if "leg" in box and not _is_pair(box.get("leg")):
        raise StateError(f"{source}: design_space.leg must be a [lo, hi] pair")
    dim = 3 if "leg" in box else 2
    experts, rows = payload["experts"], payload["scores"]
    if not isinstance(experts, list) or not isinstance(rows, list) or len(experts) != len(rows):
        raise StateError(f"{source}: experts and scores must be lists of one entry per expert")
    for k, (expert, row) in enumerate(zip(experts, rows, strict=True)):
        if not isinstance(expert, dict) or not _is_pair(expert.get("mu"), dim):
            what = "a [GCR, spcf] pair" if dim == 2 else "a [GCR, spcf, leg] triple"
            raise StateError(f"{source}: experts[{k}].mu must be {what}")
        if row is not None:
            check_levels(row, len(designs), f"{source}: scores of expert {k}", StateError)
    for name in ("oracle_mean", "routed_mean"):
        value = payload[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise StateError(f"{source}: {name} is {type(value).__name__}, not a number")
    return payload


def _is_pair(value: Any, length: int = 2) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def read_summary(store: Store, run_name: str, stem: str) -> dict[str, Any]:
    from pec.runs.safe_io import read_store_json

    key = layout.final_eval_summary_key(run_name, stem)
    data = read_store_json(store, key, StateError)
    if data is None:
        raise NotFoundError(
            f"run '{run_name}' has no final evaluation on '{stem}' ({store.uri(key)}); "
            f"run `pec eval-final --designs_file {stem}.json` first"
        )
    return check_summary(data, store.uri(key))
