"""Orchestration overhead of one PEC iteration: the `pec` flow versus the plain Python loop.

Both run the same iteration (pec.iteration.driver.run_iteration), with a local and a Prefect job
runner, on K=8 zero-cost jobs (pec.backends.zero_cost: few-byte checkpoints, level 0
everywhere), so what remains is the store I/O,
the PEC maths (identical in both) and, for the flow, Prefect's orchestration: task runs,
cache lookups, JSON result records, artifacts. Target: the flow adds at most 3 s.

    .venv/bin/python benchmarks/bench_orchestration.py [--repeats 3] [--check]

A temporary Prefect server (test harness) is started first and excluded from the timing;
one warm-up iteration of each kind is not counted either.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pec.backends.zero_cost import ZeroCostBackend

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
K = 8
TARGET_S = 3.0
OVERRIDES = {"K": K, "max_parallel_experts": K, "max_pec_iterations": 5}


def install_zero_cost_backend() -> None:
    """Every in-process job (both contenders) resolves its backend to the zero-cost one."""
    import pec.jobs.run

    pec.jobs.run.get_backend = lambda name: ZeroCostBackend(constant_level=0)  # type: ignore[attr-defined]


def time_plain_loop(store: str, run_name: str) -> float:
    from pec.iteration.driver import run_iteration
    from pec.iteration.run_setup import initialise_run
    from pec.jobs.plan import local_runner
    from pec.presentation.visualize import render_all_soft
    from pec.runs.run import open_run, write_effective_config

    run = open_run(run_name, store, TINY, OVERRIDES)
    initialise_run(run)
    write_effective_config(run)
    start = time.perf_counter()
    run_iteration(run, local_runner(run.config), plot=render_all_soft)
    return time.perf_counter() - start


def time_flow(store: str, run_name: str) -> float:
    from flows.pec_flow import pec_flow
    from pec.iteration.run_setup import initialise_run
    from pec.runs.run import open_run, write_effective_config

    run = open_run(run_name, store, TINY, OVERRIDES)
    initialise_run(run)  # as the loop: initialisation is not part of the iteration
    write_effective_config(run)
    start = time.perf_counter()
    pec_flow(run_name=run_name, store=store, config=TINY, overrides=OVERRIDES, chain=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations per contender")
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET_S} s")
    args = parser.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    logging.getLogger("pec").setLevel(logging.WARNING)
    install_zero_cost_backend()

    from prefect.testing.utilities import prefect_test_harness

    with (
        tempfile.TemporaryDirectory(prefix="pec-bench-") as tmp,
        prefect_test_harness(server_startup_timeout=120),
    ):
        store = str(Path(tmp) / "store")
        time_plain_loop(store, "warmup-loop")
        time_flow(store, "warmup-flow")
        loop = [time_plain_loop(store, f"loop-{i}") for i in range(args.repeats)]
        flow = [time_flow(store, f"flow-{i}") for i in range(args.repeats)]
    loop_s, flow_s = statistics.median(loop), statistics.median(flow)
    overhead = flow_s - loop_s
    report = {
        "K": K,
        "repeats": args.repeats,
        "plain_loop_s": round(loop_s, 3),
        "prefect_flow_s": round(flow_s, 3),
        "overhead_s": round(overhead, 3),
        "target_s": TARGET_S,
        "target_met": overhead <= TARGET_S,
    }
    print(f"one iteration, K={K} zero-cost jobs (median of {args.repeats}):")
    print(f"  plain Python loop : {loop_s:7.3f} s   {[round(v, 3) for v in loop]}")
    print(f"  pec flow (Prefect): {flow_s:7.3f} s   {[round(v, 3) for v in flow]}")
    print(f"  overhead          : {overhead:7.3f} s   (target <= {TARGET_S} s)")
    print(json.dumps(report))
    return 1 if args.check and not report["target_met"] else 0


if __name__ == "__main__":
    sys.exit(main())
