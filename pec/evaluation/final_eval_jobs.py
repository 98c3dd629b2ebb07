"""A final evaluation's protocol and jobs: one job per policy on a designs set, and its result file.

`final_protocol` is how a final evaluation scores (the run's `score` unless one is given);
every policy evaluated on a designs set shares one seed (`eval_seed`, common random numbers
for a fair race) and writes one result file (`results_payload`), which an identical later
evaluation reuses (`reusable_levels`). The experts' jobs are `final_eval_specs`; a single
policy with a record of its own (the generalist, the student) gets `single_policy_spec` and is
scored by `evaluate_single_policy`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from pec.errors import InputError, JobError, StateError
from pec.evaluation.designs_file import Design
from pec.iteration.job_inputs import checkpoint_exists, job_settings, spec_axes
from pec.jobs.runner import JobRunner
from pec.jobs.spec import EvalJobSpec, design_row
from pec.maths.curriculum import MAX_LEVEL
from pec.maths.protocols import (
    SCORE_NAMES,
    ScoreName,
    describe,
    refuse_unused_settings,
    same_protocol,
)
from pec.maths.seeds import derive_seed
from pec.runs.config import PECConfig
from pec.runs.run import Run
from pec.runs.state import PECState
from pec.runs.store import Store

log = logging.getLogger(__name__)


def designs_stem(path: str | Path) -> str:
    """``final_eval/<designs_stem>/``: the designs file's name without its extension."""
    stem = Path(path).stem
    if not stem:
        raise InputError(f"designs file '{path}' has no usable name; rename it, e.g. test.json")
    return stem


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


def single_policy_spec(
    run: Run,
    state: PECState,
    job_id: int,
    record: dict[str, Any] | None,
    designs: Sequence[Design],
    stem: str,
    num_episodes: int,
    start_difficulty: int,
    score: ScoreName | None = None,
) -> EvalJobSpec | None:
    """The final-evaluation job of one policy that has a record of its own (the generalist,
    the student): the experts' protocol and seed; None without a record or its checkpoint."""
    if record is None or not checkpoint_exists(run, record.get("checkpoint")):
        return None
    return final_eval_spec(
        run,
        state,
        job_id,
        str(record["checkpoint"]),
        designs,
        stem,
        num_episodes,
        start_difficulty,
        threads=run.config.job_threads(1),
        score=score,
    )


def evaluate_single_policy(
    run: Run,
    spec: EvalJobSpec | None,
    designs: Sequence[Design],
    key: str,
    runner: JobRunner,
    kind: str,
    who: str,
    missing: str,
) -> dict[str, Any]:
    """Score one policy with its eval job and store the payload at `key`; a stored result of
    the same protocol and designs is reused. `spec` None (nothing to evaluate) raises
    `missing`; `kind` names the policy in the payload, `who` in a failed job's error."""
    if spec is None:
        raise StateError(missing)
    if reusable_levels(run.store, key, spec, designs) is not None:
        return dict(json.loads(run.store.read_bytes(key)))
    (outcome,) = runner.run_jobs([spec])
    result = outcome.eval_result()
    if result is None:
        raise JobError(f"{who} could not be evaluated: {outcome.error}")
    payload = results_payload(spec, designs, list(result.levels), kind)
    run.store.write_bytes(key, json.dumps(payload, indent=1).encode())
    return payload


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
