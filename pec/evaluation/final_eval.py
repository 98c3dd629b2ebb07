"""Final evaluation: every expert on held-out designs, and what a deployed robot would get.

The reference sheet only reports the per-design oracle (best expert with hindsight). A robot
in the field gets the expert chosen by nearest-centre routing, so the summary carries both,
side by side, from the same score matrix. The maths below is pure (arrays in, arrays out);
the store-level helpers below it are what `pec.evaluation.final_eval_driver` (the one driver the CLI and the
Prefect flow share) reads and writes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike

from pec.errors import InputError, NotFoundError, StateError
from pec.evaluation.designs_file import Design
from pec.evaluation.evidence import router_evidence_size, run_evidence
from pec.iteration.job_inputs import checkpoint_exists, job_settings, spec_axes
from pec.jobs.spec import EvalJobSpec, design_row
from pec.maths.curriculum import MAX_LEVEL
from pec.maths.design_space import DesignSpace, FloatArray, IntArray
from pec.maths.protocols import (
    SCORE_NAMES,
    ScoreName,
    describe,
    refuse_unused_settings,
    same_protocol,
)
from pec.maths.refit import assign_winners
from pec.maths.routing import route
from pec.maths.score_routing import DEFAULT_NEIGHBOURS, ScoreEvidence, route_by_scores
from pec.maths.seeds import derive_seed
from pec.runs import layout
from pec.runs.config import PECConfig
from pec.runs.run import Run
from pec.runs.state import PECState
from pec.runs.store import Store

log = logging.getLogger(__name__)

SUMMARY_VERSION = 1


# ---------------------------------------------------------------- pure summary maths


@dataclass(frozen=True)
class ScoreSummary:
    """The final-evaluation numbers of one run on one designs set.

    ``scores`` is (K, N) with NaN rows for experts that could not be evaluated; every
    per-design array has length N, expert indices are expert ids.
    """

    scores: FloatArray
    evaluated: list[int]
    oracle: FloatArray
    oracle_expert: IntArray
    routed_expert: IntArray
    routed: FloatArray

    @property
    def oracle_mean(self) -> float:
        return float(np.mean(self.oracle))

    @property
    def routed_mean(self) -> float:
        return float(np.mean(self.routed))

    def expert_means(self) -> list[float | None]:
        return [
            None if k not in self.evaluated else float(np.mean(self.scores[k]))
            for k in range(self.scores.shape[0])
        ]

    @property
    def routed_hits(self) -> int:
        """Designs where the routed expert scores as well as the oracle (ties count as hits)."""
        return int(np.sum(self.routed == self.oracle))


def as_score_matrix(scores: ArrayLike) -> FloatArray:
    """(K, N) float matrix; NaN marks an expert that was not evaluated (a whole row)."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise InputError(
            f"score matrix has shape {matrix.shape}; pass (K, N): one row per expert, "
            "one column per design"
        )
    if np.any(np.isinf(matrix)):
        raise InputError("score matrix holds infinite values; scores are final levels 0..74")
    partial = np.isnan(matrix).any(axis=1) & ~np.isnan(matrix).all(axis=1)
    if partial.any():
        k = int(np.argmax(partial))
        raise InputError(
            f"scores of expert {k} are missing for some designs only; an expert is evaluated "
            "on every design or on none (null row)"
        )
    return matrix


def summarise_scores(
    scores: ArrayLike, designs: ArrayLike, mus: ArrayLike, space: DesignSpace
) -> ScoreSummary:
    """Oracle (best expert per design, ties to the lower id) and routed score per design.

    Routing considers only the experts that were evaluated: a deployed bundle can only hold
    experts that have a policy, so a design is routed to the nearest centre among those.
    """
    matrix = as_score_matrix(scores)
    points = space.points("designs", designs)
    centres = space.points("mus", mus, allow_empty=False)
    K, N = matrix.shape
    if points.shape[0] != N:
        raise InputError(f"{points.shape[0]} designs but the score matrix has {N} columns")
    if centres.shape[0] != K:
        raise InputError(f"{centres.shape[0]} centres but the score matrix has {K} expert rows")
    evaluated = [k for k in range(K) if not np.isnan(matrix[k]).any()]
    if not evaluated:
        raise InputError("no expert was evaluated (every score row is null); nothing to summarise")
    oracle_expert = assign_winners(matrix)
    oracle = matrix[oracle_expert, np.arange(N)]
    ids = np.asarray(evaluated, dtype=np.int64)
    routed_expert: IntArray = ids[route(points, centres[ids], space)]
    routed = matrix[routed_expert, np.arange(N)]
    return ScoreSummary(
        scores=matrix,
        evaluated=evaluated,
        oracle=oracle,
        oracle_expert=oracle_expert.astype(np.int64),
        routed_expert=routed_expert,
        routed=routed,
    )


@dataclass(frozen=True)
class Comparison:
    """PEC against the generalist on the same designs (`diff` = PEC − baseline)."""

    diff: FloatArray
    wins: int
    ties: int
    losses: int
    wins_by_expert: dict[int, int]  # which expert earned each win

    @property
    def mean_diff(self) -> float:
        return float(np.mean(self.diff))


def compare_scores(pec: ArrayLike, baseline: ArrayLike, pec_expert: ArrayLike) -> Comparison:
    """Win/tie/loss of PEC per design, and the expert behind every win."""
    p = np.asarray(pec, dtype=np.float64).reshape(-1)
    b = np.asarray(baseline, dtype=np.float64).reshape(-1)
    e = np.asarray(pec_expert, dtype=np.int64).reshape(-1)
    if not p.shape == b.shape == e.shape:
        raise InputError(
            f"PEC ({p.size}), baseline ({b.size}) and expert ({e.size}) arrays differ in length; "
            "compare scores of the same designs"
        )
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(b))):
        raise InputError("scores must be finite to compare; evaluate every design")
    diff = p - b
    win = diff > 0
    wins_by_expert: dict[int, int] = {}
    for k in e[win].tolist():
        wins_by_expert[int(k)] = wins_by_expert.get(int(k), 0) + 1
    return Comparison(
        diff=diff,
        wins=int(np.sum(win)),
        ties=int(np.sum(diff == 0)),
        losses=int(np.sum(diff < 0)),
        wins_by_expert=dict(sorted(wins_by_expert.items())),
    )


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is 0 (a ratio would be meaningless)."""
    if denominator == 0 or not math.isfinite(denominator):
        return None
    return numerator / denominator


# ---------------------------------------------------------------- summary.json


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
            "routed": "nearest centre (both axes normalised to [0, 1]) among evaluated experts; "
            "ties to the lower id",
        },
    }


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


def designs_stem(path: str | Path) -> str:
    """``final_eval/<designs_stem>/``: the designs file's name without its extension."""
    stem = Path(path).stem
    if not stem:
        raise InputError(f"designs file '{path}' has no usable name; rename it, e.g. test.json")
    return stem


# ---------------------------------------------------------------- store-level step


def eval_seed(run: Run, stem: str) -> int:
    """One seed per designs set, shared by every policy: common random numbers for a fair race."""
    return derive_seed(run.config.seed, "final-eval", stem)


@dataclass(frozen=True)
class FinalProtocol:
    """How a final evaluation scores: `score` with the final-level settings it records."""

    score: ScoreName
    num_episodes: int
    start_difficulty: int


def final_protocol(
    config: PECConfig,
    score: str | None = None,
    num_episodes: int | None = None,
    start_difficulty: int | None = None,
    flag: str = "--",
) -> FinalProtocol:
    """The final evaluation's protocol: the run's configured `score` unless one is given.

    `num_episodes` / `start_difficulty` set the final_level protocol only; passing either
    under level_search is refused instead of silently ignored. `flag` prefixes the names in
    messages (``--`` for CLI flags, ``""`` for flow parameters).
    """
    if score is not None and score not in SCORE_NAMES:
        raise InputError(f"{flag}score {score!r}: choose one of {', '.join(SCORE_NAMES)}")
    chosen: ScoreName = config.score if score is None else cast(ScoreName, score)
    refuse_unused_settings(
        chosen,
        {"num_episodes": num_episodes, "start_difficulty": start_difficulty},
        config.search_max_level,
        flag,
    )
    episodes = config.num_episodes if num_episodes is None else num_episodes
    start = config.start_difficulty if start_difficulty is None else start_difficulty
    if isinstance(episodes, bool) or not 1 <= episodes <= 100_000:
        raise InputError(f"{flag}num_episodes {episodes}: pass 1..100,000 episodes")
    if isinstance(start, bool) or not 0 <= start <= MAX_LEVEL:
        raise InputError(
            f"{flag}start_difficulty {start}: the obstacle level must be in 0..{MAX_LEVEL}"
        )
    return FinalProtocol(score=chosen, num_episodes=episodes, start_difficulty=start)


def final_eval_spec(
    run: Run,
    state: PECState,
    job_id: int,
    checkpoint_uri: str,
    designs: Sequence[Design],
    stem: str,
    num_episodes: int,
    start_difficulty: int,
    threads: int,
    score: ScoreName | None = None,
) -> EvalJobSpec:
    """One policy's final-evaluation job: every design, the set's shared seed and protocol
    (`score` None: the run's configured protocol)."""
    return EvalJobSpec(
        kind="eval",
        backend=run.config.backend,
        store=run.store_spec,
        run_name=run.name,
        expert_id=job_id,
        iteration=state.iteration,
        checkpoint_uri=checkpoint_uri,
        designs=[design_row(d.values()) for d in designs],
        axes=spec_axes(run),
        num_episodes=num_episodes,
        start_difficulty=start_difficulty,
        score=run.config.score if score is None else score,
        search_max_level=run.config.search_max_level,
        seed=eval_seed(run, stem),
        device=run.config.effective_device,
        settings=job_settings(run, state),
        timeout_s=run.config.eval_timeout_h * 3600.0,
        threads=threads,
    )


def final_eval_specs(
    run: Run,
    state: PECState,
    designs: Sequence[Design],
    stem: str,
    num_episodes: int,
    start_difficulty: int,
    score: ScoreName | None = None,
) -> dict[int, EvalJobSpec | None]:
    """One evaluation job per expert; None for an expert without a checkpoint in the store."""
    specs: dict[int, EvalJobSpec | None] = {}
    for expert in state.experts:
        if expert.checkpoint is None or not checkpoint_exists(run, expert.checkpoint):
            log.warning("expert %d has no checkpoint in the store; not evaluated", expert.id)
            specs[expert.id] = None
            continue
        specs[expert.id] = final_eval_spec(
            run,
            state,
            expert.id,
            expert.checkpoint,
            designs,
            stem,
            num_episodes,
            start_difficulty,
            threads=run.config.job_threads(run.config.experts_in_flight),
            score=score,
        )
    return specs


def spec_protocol(spec: EvalJobSpec) -> dict[str, Any]:
    """What produced a result file's levels: the protocol (its own settings and ceiling) and
    the seed (`pec.maths.protocols.describe`)."""
    return describe(
        spec.score, spec.num_episodes, spec.start_difficulty, spec.search_max_level, seed=spec.seed
    )


def results_payload(
    spec: EvalJobSpec, designs: Sequence[Design], levels: Sequence[int], who: str
) -> dict[str, Any]:
    """Per-policy result file: the full per-design payload plus what produced it."""
    if len(levels) != len(designs):
        raise InputError(f"{who}: {len(levels)} levels for {len(designs)} designs")
    return {
        "who": who,
        "expert_id": spec.expert_id,
        "checkpoint": spec.checkpoint_uri,
        "protocol": spec_protocol(spec),
        "designs": [
            {"id": d.id, "GCR": d.GCR, "spcf": d.spcf, "level": int(v)}
            for d, v in zip(designs, levels, strict=True)
        ],
        "levels": [int(v) for v in levels],
        "mean": float(np.mean(levels)),
    }


def reusable_levels(
    store: Store, key: str, spec: EvalJobSpec, designs: Sequence[Design]
) -> list[int] | None:
    """Levels of an earlier identical evaluation (same checkpoint, designs, protocol), else None.

    Lets an interrupted final evaluation resume without re-running finished experts. The
    protocols are compared on what defines them (`same_protocol`): under level_search a
    result stays valid when only num_episodes / start_difficulty changed, and one written by
    an older version that also recorded those unused keys is still reused.
    """
    from pec.runs.run_records import check_levels
    from pec.runs.safe_io import read_store_json

    try:
        data = read_store_json(store, key, StateError)
        if data is None:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("designs"), list):
            raise StateError(f"{store.uri(key)} is not a results object")
        levels = check_levels(data.get("levels"), len(designs), store.uri(key), StateError)
    except StateError as exc:
        log.warning("%s; evaluating again", exc)
        return None
    same = (
        data.get("checkpoint") == spec.checkpoint_uri
        and same_protocol(data.get("protocol"), spec_protocol(spec))
        and [
            (e.get("id"), e.get("GCR"), e.get("spcf"), e.get("leg"))
            if isinstance(e, dict)
            else None
            for e in data["designs"]
        ]
        == [(d.id, d.GCR, d.spcf, d.leg) for d in designs]
    )
    return levels if same else None


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
