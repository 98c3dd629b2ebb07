"""The JSON records a run writes for itself, read back with every field checked.

A later step trusts what an earlier one recorded — the frontier candidates, the scores,
the assignments, a training's result — so a record that was cut off, hand-edited into the
wrong shape or overwritten with another file is refused here with one StateError line
naming the file, instead of surfacing as a KeyError or TypeError deep inside a refit.
Hand-written scores (``pec refit --scores``) go through the same checks as InputError.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import ValidationError

from pec.errors import InputError, PECError, StateError
from pec.maths.curriculum import MAX_LEVEL
from pec.runs import layout
from pec.runs.job_records import TrainJobResult
from pec.runs.safe_io import expect_mapping, read_store_json
from pec.runs.store import Store


def check_level(value: Any, who: str, error: type[PECError] = InputError) -> int:
    """One final obstacle level: an integer (or a float with no fraction) in [0, MAX_LEVEL]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        shown = repr(value) if not isinstance(value, list | dict) else type(value).__name__
        raise error(f"{who} is {shown[:40]}, not a number; scores are levels 0..{MAX_LEVEL}")
    if not math.isfinite(value):
        raise error(f"{who} is {value!r}, not a finite number; scores are levels 0..{MAX_LEVEL}")
    if value != int(value):
        raise error(f"{who} is {value!r}, not an integer; scores are levels 0..{MAX_LEVEL}")
    if not 0 <= value <= MAX_LEVEL:
        raise error(f"{who} is {value!r}, outside the levels 0..{MAX_LEVEL}")
    return int(value)


def check_levels(
    levels: Any, expected: int, who: str, error: type[PECError] = InputError
) -> list[int]:
    """A row of ``expected`` levels (one per candidate)."""
    if not isinstance(levels, list):
        raise error(
            f"{who}: is {type(levels).__name__}, expected a list of {expected} scores "
            "(one per candidate)"
        )
    if len(levels) != expected:
        raise error(f"{who}: expected {expected} scores (one per candidate), got {len(levels)}")
    return [check_level(v, f"{who}: score of candidate {i}", error) for i, v in enumerate(levels)]


def check_scores_payload(data: Any, source: str, error: type[PECError]) -> dict[str, Any]:
    """``{"scores": [row | null, ...], ...}``: the rows' contents are checked by score_matrix."""
    payload = expect_mapping(data, source, error, "scores")
    if not isinstance(payload["scores"], list):
        raise error(
            f"{source}: scores is {type(payload['scores']).__name__}; expected a list of K rows"
        )
    return payload


def read_scores(store: Store, run_name: str, iteration: int) -> dict[str, Any] | None:
    key = layout.scores_key(run_name, iteration)
    data = read_store_json(store, key, StateError)
    if data is None:
        return None
    return check_scores_payload(data, store.uri(key), StateError)


def parse_candidates(data: Any, source: str, keys: tuple[str, ...] = ("GCR", "spcf")) -> np.ndarray:
    """(F, d) finite rows of a candidates.json payload, one column per key (GCR, spcf(, leg))."""
    payload = expect_mapping(data, source, StateError, "candidates")
    rows = payload["candidates"]
    if not isinstance(rows, list) or not rows:
        raise StateError(f"{source}: candidates must be a non-empty list of objects")
    points = np.empty((len(rows), len(keys)))
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise StateError(f"{source}: candidates[{i}] is {type(row).__name__}, not an object")
        for j, name in enumerate(keys):
            value = row.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise StateError(
                    f"{source}: candidates[{i}].{name} is {type(value).__name__}, not a number; "
                    "rerun `pec frontier` into a fresh run or restore the file"
                )
            points[i, j] = value
    return points


def read_candidates(
    store: Store, run_name: str, iteration: int, keys: tuple[str, ...] = ("GCR", "spcf")
) -> np.ndarray | None:
    key = layout.candidates_key(run_name, iteration)
    data = read_store_json(store, key, StateError)
    return None if data is None else parse_candidates(data, store.uri(key), keys)


def read_assignments(store: Store, run_name: str, iteration: int) -> dict[str, Any] | None:
    key = layout.assignments_key(run_name, iteration)
    data = read_store_json(store, key, StateError)
    if data is None:
        return None
    payload = expect_mapping(data, store.uri(key), StateError, "won_counts")
    counts = payload["won_counts"]
    if not isinstance(counts, list) or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts
    ):
        raise StateError(f"{store.uri(key)}: won_counts must be a list of counts >= 0")
    return payload


def parse_train_result(data: Any, source: str) -> TrainJobResult:
    expect_mapping(data, source, StateError)
    try:
        return TrainJobResult.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "result"
        raise StateError(
            f"{source}: {where}: {first['msg']}; delete the file to retrain that expert"
        ) from None


def read_train_dl(store: Store, run_name: str, expert_id: int, iteration: int) -> int | None:
    """The ``dl`` a training's result.json recorded (None when absent or not a level)."""
    key = layout.train_result_key(run_name, expert_id, iteration)
    data = read_store_json(store, key, StateError, finite=False)
    value = data.get("dl") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LEVEL:
        return None
    return value


def read_train_metrics(
    store: Store, run_name: str, expert_id: int, iteration: int
) -> dict[str, float] | None:
    """Only the metrics of a training's result.json (what `pec status` sums), checked."""
    key = layout.train_result_key(run_name, expert_id, iteration)
    data = read_store_json(store, key, StateError, finite=False)
    if data is None:
        return None
    source = store.uri(key)
    metrics = expect_mapping(data, source, StateError).get("metrics", {})
    if not isinstance(metrics, dict) or any(
        isinstance(v, bool) or not isinstance(v, int | float) for v in metrics.values()
    ):
        raise StateError(f"{source}: metrics must be an object of numbers; restore the file")
    return {str(name): float(value) for name, value in metrics.items()}


def read_train_result(
    store: Store, run_name: str, expert_id: int, iteration: int
) -> TrainJobResult | None:
    return read_train_result_at(store, layout.train_result_key(run_name, expert_id, iteration))


def read_train_result_at(store: Store, key: str) -> TrainJobResult | None:
    """A training's result.json at `key` (an expert's or the trunk's), checked; None if absent."""
    data = read_store_json(store, key, StateError, finite=False)  # metrics may be NaN
    return None if data is None else parse_train_result(data, store.uri(key))
