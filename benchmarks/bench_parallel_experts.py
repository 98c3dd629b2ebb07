"""One PEC iteration's expert trainings (K=2) one after the other vs side by side.

Builds a fresh run, writes both experts' training jobs with `pec.iteration.training.prepare_training`
(the same specs `pec run` and the flow execute) and runs them with the subprocess executor:

- sequential: `max_parallel_experts: 1`, one job at a time (thread policy: all cores each);
- parallel: `max_parallel_experts: 2`, both at once (thread policy: cores // 2 each);
- parallel, no policy: both at once with the threads each job's libraries pick by
  themselves (what parallel experts did before the thread policy).

Prints wall time, the cores' share used (children's CPU seconds / (wall x cores)) and the
ratio parallel / sequential. Targets: share >= 0.9, parallel <= 0.8 x sequential.

    nice -n 10 .venv/bin/python benchmarks/bench_parallel_experts.py [--iterations 60]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pec.errors import JobError, PECError
from pec.iteration.run_setup import initialise_run
from pec.iteration.training import prepare_training
from pec.jobs.plan import local_runner
from pec.jobs.spec import TrainJobSpec
from pec.runs.config import PECConfig, build_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import make_run
from pec.runs.store import LocalStore
from pec.runs.threads import available_cores


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def specs(
    root: Path, name: str, parallel: int, iterations: int, envs: int
) -> tuple[PECConfig, list[TrainJobSpec]]:
    store = LocalStore(root / name)
    config = build_config(
        {
            "K": 2,
            "N_init": 8,
            "num_envs": envs,
            "max_iterations_iter0": iterations,
            "max_parallel_experts": parallel,
            "executor": "subprocess",
            "backend_settings": {"task": {"curriculum_warmup_iterations": 10}},
        }
    )
    run = make_run(store, StoreSpec(location=store.root_uri), name, config)
    state, _, _ = initialise_run(run)
    return config, [prepare_training(run, state, k) for k in range(2)]


def timed(config: PECConfig, jobs: list[TrainJobSpec]) -> tuple[float, float]:
    """(wall seconds, children's CPU seconds) to run the jobs as `pec run` does (its runner)."""
    runner = local_runner(config)  # max_parallel_experts jobs at a time, subprocess executor
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    outcomes = runner.run_jobs(jobs)
    wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    failed = [o.error for o in outcomes if o.failed]
    if failed:
        raise JobError(str(failed[0]))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60, help="PPO iterations per expert")
    parser.add_argument("--envs", type=int, default=64)
    parser.add_argument(
        "--no-policy-timeout",
        type=float,
        default=300.0,
        help="give up on the unmanaged parallel run after this many seconds",
    )
    args = parser.parse_args()
    cores = available_cores()
    print(f"K=2, {args.iterations} PPO iterations x {args.envs} envs per expert, {cores} cores")
    print(
        f"{'mode':<22} {'threads/job':>11} {'wall s':>8} {'CPU s':>8} {'cores used':>11}",
        flush=True,
    )
    # Warm the interpreter's imports (file cache) so the first mode measured pays no extra.
    subprocess.run([sys.executable, "-c", "import torch, mujoco, rsl_rl, pec.jobs.run"], check=True)
    rows: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="pec-bench-par-") as tmp:
        root = Path(tmp)
        for label, in_flight, policy in (
            ("sequential", 1, True),
            ("parallel", 2, True),
            ("parallel, no policy", 2, False),
        ):
            name = label.replace(" ", "").replace(",", "-")
            config, jobs = specs(root, name, in_flight, args.iterations, args.envs)
            if not policy:
                timeout = args.no_policy_timeout
                jobs = [j.model_copy(update={"threads": None, "timeout_s": timeout}) for j in jobs]
            try:
                wall, cpu = timed(config, jobs)
            except PECError as exc:
                print(f"{label:<22} {'auto':>11} did not finish: {str(exc).splitlines()[0]}")
                continue
            rows[label] = (wall, cpu)
            shown = "auto" if jobs[0].threads is None else str(jobs[0].threads)
            share = cpu / (wall * cores)
            print(f"{label:<22} {shown:>11} {wall:>8.1f} {cpu:>8.1f} {share:>11.2f}", flush=True)
    sequential, parallel = rows["sequential"][0], rows["parallel"][0]
    print(f"parallel / sequential wall: {parallel / sequential:.2f} (target <= 0.80)")
    if "parallel, no policy" in rows:
        unmanaged = rows["parallel, no policy"][0]
        print(f"parallel without policy / sequential wall: {unmanaged / sequential:.2f}")
    wall, cpu = rows["parallel"]
    print(f"cores used in parallel: {cpu / (wall * cores):.2f} (target >= 0.90)")


if __name__ == "__main__":
    main()
