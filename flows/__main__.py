"""`python -m flows --run_name NAME --config FILE`: a whole run in this process, no worker.

Each iteration is one `pec` flow run (ephemeral Prefect unless PREFECT_API_URL is set),
called in a loop with chain=False instead of scheduling successors on a deployment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from pec.errors import MESSAGE_LIMIT, PECError, one_line
from pec.jobs.run import prefix_uri
from pec.presentation.console import console, progress_bar
from pec.runs import layout
from pec.runs.config import parse_override
from pec.runs.run import open_run

# The ephemeral server migrates a fresh database on first use; 20 s (Prefect's default) is
# too short on a busy 2-core laptop.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows", description="Run PEC iterations as Prefect flow runs, in-process."
    )
    parser.add_argument("--run_name", required=True, help="name of the run (folder in the store)")
    parser.add_argument("--config", default=None, help="YAML config (default: the run's own)")
    parser.add_argument("--store", default="runs", help="local folder or s3://bucket/prefix")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override one key"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        overrides: dict[str, Any] = dict(parse_override(item) for item in args.set)
        run = open_run(args.run_name, args.store, args.config, overrides)
        store, config = run.store, run.config
        from flows.pec_flow import pec_flow  # Prefect's import cost only after validation

        progress = progress_bar()
        with progress:
            bar = progress.add_task(
                f"run {args.run_name}", total=config.max_pec_iterations, info=""
            )
            while True:
                result = pec_flow(
                    run_name=args.run_name,
                    store=args.store,
                    config=args.config,
                    overrides=overrides or None,
                    chain=False,
                )
                coverage = result.get("coverage")
                info = f"coverage {coverage:.3f}" if coverage is not None else ""
                progress.update(bar, completed=result["next_iteration"], info=info)
                if result.get("stop_reason"):
                    break
        console.print(f"finished: {result['stop_reason']}")
        console.print(f"state: {result['state_uri']}")
        console.print(f"plots: {prefix_uri(store, layout.plots_dir(args.run_name))}")
        console.print(f"see also: pec status --run_name {args.run_name} --store {args.store}")
        return 0
    except PECError as exc:
        print(f"error: {one_line(exc, MESSAGE_LIMIT)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
