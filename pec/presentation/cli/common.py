"""What every `pec` sub-command shares: the common flags, argument types, opening a run."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from pec.maths.protocols import (
    SETTINGS,
    refuse_unused_settings,
    unused_override_warnings,
)
from pec.runs.config import parse_override
from pec.runs.run import Run, open_run

DEFAULT_STORE = "runs"


def overrides_from_args(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` items, then the command's own config flags that were given."""
    values: dict[str, Any] = {}
    for item in getattr(args, "set", None) or []:
        key, value = parse_override(item)
        values[key] = value
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return values


def open_run_from_args(args: argparse.Namespace, config_keys: Sequence[str] = ()) -> Run:
    """Open the run with `--set` items and the command's own config flags (`config_keys`).

    A flag for a final_level setting (`--num_episodes`, `--start_difficulty`) under the
    level_search protocol (the command's `--score`, else the run's) would be ignored, so it
    is refused with one line before anything is written. A `--set` of one edits the run's
    config like its file would (kept for final_level scoring), so it only draws a warning.
    """
    run = open_run(args.run_name, args.store, args.config, overrides_from_args(args, config_keys))
    config = run.config
    own_score = hasattr(args, "score")  # eval-final, baseline eval: --score wins over the run's
    score = (args.score if own_score else None) or config.score
    refuse_unused_settings(
        score,
        {name: getattr(args, name, None) for name in SETTINGS["final_level"]},
        config.search_max_level,
        switch="--score final_level" if own_score else "--set score=final_level",
    )
    sets = overrides_from_args(args, ())
    for line in unused_override_warnings(score, sets, config.search_max_level):
        print(f"pec: warning: {line}", file=sys.stderr)
    return run


def default_store() -> str:
    return os.environ.get("PEC_STORE", DEFAULT_STORE)


def add_common(p: argparse.ArgumentParser, *, config: bool = True) -> None:
    p.add_argument(
        "--run_name", "--run-name", required=True, help="name of the run (folder under the store)"
    )
    p.add_argument(
        "--store",
        default=default_store(),
        help="a folder or s3://bucket/prefix (default: $PEC_STORE or ./runs)",
    )
    if config:
        p.add_argument(
            "--config", help="YAML config file (default: the run's recorded pec_config.yaml)"
        )
        p.add_argument(
            "--set",
            action="append",
            metavar="KEY=VALUE",
            help="override any config key (repeatable)",
        )


def pair(text: str) -> tuple[float, float]:
    try:
        values = (
            json.loads(text)
            if text.strip().startswith("[")
            else [float(v) for v in text.split(",")]
        )
    except (ValueError, json.JSONDecodeError):
        raise argparse.ArgumentTypeError(f"'{text}' is not a pair like 0.75,0.89") from None
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"'{text}' must hold exactly two numbers")
    return float(values[0]), float(values[1])


def centers(text: str) -> list[tuple[float, ...]]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(
            f"--centers '{text}' is not JSON like [[0.8,0.004],[0.85,0.008]]"
        ) from None
    widths = (
        {len(v) if isinstance(v, list) else -1 for v in values}
        if isinstance(values, list)
        else set()
    )
    if not isinstance(values, list) or widths not in ({2}, {3}):
        raise argparse.ArgumentTypeError(
            "--centers must be a JSON list of [GCR, spcf] pairs ([GCR, spcf, leg] triples "
            "with --leg_range)"
        )
    return [tuple(float(x) for x in v) for v in values]
