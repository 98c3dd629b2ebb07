"""Kill-and-resume driver: SIGKILL a PEC run at named fault points, resume it, compare.

Two modes, both run by tests/test_kill_resume.py in a subprocess:

``loop``: one parent imports torch/MuJoCo/matplotlib once, then forks a child per attempt
(an uninterrupted reference, then per fault point a child with ``PEC_FAULT_POINT`` set that
kills itself, then a plain child that resumes). Forking keeps 20+ kills within seconds
each; every child is a real process killed by a real SIGKILL. Prints a JSON report.

``flow``: runs the Prefect flow `pec` (one flow run per iteration) until the run stops, in
this process; the test sets ``PEC_FAULT_POINT`` and the Prefect API URL in its environment.

Single-threaded torch everywhere (OMP_NUM_THREADS=1, set before torch loads) so a resumed
run is bit-identical to the reference whatever the machine's core count.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from pec.faults import FAULT_ENV

RUN = "kr"
IGNORED_PARTS = ("/tb/", "/plots/", "/prefect-results/", "/leases/")


def run_loop_once(store_root: Path, config: str) -> None:
    """One `pec run` of the config (the plain loop), in this process."""
    import torch

    from pec.iteration.driver import run_until_done
    from pec.jobs.executors import InProcessExecutor
    from pec.jobs.runner import LocalJobRunner
    from pec.presentation.visualize import render_all_soft
    from pec.runs.config import load_config
    from pec.runs.job_records import StoreSpec
    from pec.runs.run import make_run
    from pec.runs.store import LocalStore

    torch.set_num_threads(1)
    store_root.mkdir(parents=True, exist_ok=True)
    store = LocalStore(store_root)
    run = make_run(store, StoreSpec(location=str(store_root)), RUN, load_config(config))
    run_until_done(run, LocalJobRunner(InProcessExecutor()), plot=render_all_soft)


def run_flow_until_done(store_root: Path, config: str) -> None:
    """Flow runs of `pec` (chain off) until the run's stop rule holds, in this process."""
    import torch

    from flows.pec_flow import pec_flow

    torch.set_num_threads(1)
    for _ in range(50):
        summary = pec_flow(run_name=RUN, store=str(store_root), config=config, chain=False)
        if summary["stop_reason"] is not None:
            return
    raise RuntimeError("the flow did not stop within 50 flow runs")


def fork_attempt(store_root: Path, config: str, fault: str | None) -> int | None:
    """Run the loop in a forked child; the signal that ended it (None: exited normally)."""
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            if fault is not None:
                os.environ[FAULT_ENV] = fault
            else:
                os.environ.pop(FAULT_ENV, None)
            run_loop_once(store_root, config)
        except BaseException as exc:  # report and exit non-zero
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return os.WTERMSIG(status)
    if os.WEXITSTATUS(status) != 0:
        raise RuntimeError(f"attempt in {store_root} (fault {fault}) exited {status}")
    return None


# ---------------------------------------------------------------- comparison


def _keys(root: Path) -> dict[str, Path]:
    from pec.runs.store import LocalStore

    store = LocalStore(root)
    out = {}
    for key in store.list(f"{RUN}/"):
        if any(part in f"/{key}" for part in IGNORED_PARTS):
            continue
        out[key] = root / key
    return out


def _normalised(path: Path, root: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix in (".json", ".yaml"):
        data = data.replace(str(root).encode(), b"<store>")
    return data


def checkpoint_references(root: Path) -> list[str]:
    """Every checkpoint URI the run's state and result files point at."""
    state = json.loads((root / RUN / "pec_state.json").read_text())
    uris: list[str] = []
    for expert in state["experts"]:
        uris += [u for u in (expert.get("checkpoint"), expert.get("last_checkpoint")) if u]
        uris += [f["fallback_checkpoint"] for f in expert["failures"] if f["fallback_checkpoint"]]
    for entry in state["history"]:
        uris += [s["checkpoint"] for s in entry["experts_snapshot"] if s.get("checkpoint")]
    for result in (root / RUN / "checkpoints").rglob("result.json"):
        data = json.loads(result.read_text())
        uris += [u for u in (data["checkpoint_uri"], data.get("last_checkpoint_uri")) if u]
    return uris


def compare_runs(reference: Path, candidate: Path) -> list[str]:
    """Differences between two stores of the same run (empty: identical where it matters).

    Same pec_state.json (Gaussians, designs, history, coverage, failures), same objects
    (checkpoints and samples byte for byte, JSON with the store root normalised), and every
    checkpoint reference resolves inside the candidate's own store. TensorBoard files,
    plots, Prefect's result records and iteration leases (holder, pid, times) are excluded.
    """
    problems: list[str] = []
    ref_keys, got_keys = _keys(reference), _keys(candidate)
    if set(ref_keys) != set(got_keys):
        problems.append(
            f"objects differ: missing {sorted(set(ref_keys) - set(got_keys))}, "
            f"extra {sorted(set(got_keys) - set(ref_keys))}"
        )
    for key in sorted(set(ref_keys) & set(got_keys)):
        if _normalised(ref_keys[key], reference) != _normalised(got_keys[key], candidate):
            problems.append(f"{key} differs")
    for uri in checkpoint_references(candidate):
        path = Path(uri)
        if not path.is_file():
            problems.append(f"reference to a missing checkpoint: {uri}")
        elif candidate not in path.parents:
            problems.append(f"reference outside the run's store: {uri}")
    return problems


# ---------------------------------------------------------------- modes


def loop_mode(work: Path, config: str, points: list[str]) -> dict[str, Any]:
    import matplotlib.pyplot  # noqa: F401 - loaded once, shared by every fork

    import pec.backends.mujoco.backend
    import pec.iteration.driver  # noqa: F401

    t0 = time.monotonic()
    reference = work / "reference"
    if fork_attempt(reference, config, None) is not None:
        raise RuntimeError("the reference run was killed")
    report: dict[str, Any] = {"reference_s": time.monotonic() - t0, "points": []}
    for index, point in enumerate(points):
        t1 = time.monotonic()
        root = work / f"p{index:02d}"
        # "a+b": killed at a, the resume killed at b (counted afresh), then resumed again
        kills = [fork_attempt(root, config, fault) for fault in point.split("+")]
        resumed_by = fork_attempt(root, config, None)
        report["points"].append(
            {
                "point": point,
                "root": str(root),
                "killed": all(k == signal.SIGKILL for k in kills),
                "resume_signal": resumed_by,
                "problems": compare_runs(reference, root),
                "seconds": time.monotonic() - t1,
            }
        )
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="mode", required=True)
    loop = sub.add_parser("loop")
    loop.add_argument("--work", type=Path, required=True)
    loop.add_argument("--config", required=True)
    loop.add_argument("--report", type=Path, required=True)
    loop.add_argument("points", nargs="+")
    flow = sub.add_parser("flow")
    flow.add_argument("--store", type=Path, required=True)
    flow.add_argument("--config", required=True)
    args = parser.parse_args(argv)
    if args.mode == "loop":
        report = loop_mode(args.work, args.config, args.points)
        args.report.write_text(json.dumps(report, indent=2))
        return 0
    run_flow_until_done(args.store, args.config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
