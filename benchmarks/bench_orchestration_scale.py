"""Benchmark P8: orchestration at scale, K = 8 / 64 / 256 zero-cost experts in one iteration.

Two contenders run one PEC iteration (`pec/main` from prefect.yaml, the tiny config with
`K` experts, `max_parallel_experts: K`) through a real `prefect server` and process workers:

- mapped:     `executor: inprocess`, each job a mapped task run inside the iteration flow;
- deployment: `executor: deployment`, each job a `pec-expert/local` child flow run on the
              process pool served by 2 workers (`--limit 4` each: 8 processes at a time).

Each on a server backed by SQLite and by PostgreSQL 15 (tests/support/postgres.py). The
experts are zero-cost (tests/support/zero_cost_site: no physics, tiny checkpoints), so what
is measured is orchestration, the store and the PEC maths. Printed per (database, contender,
K): the iteration's wall time (the flow run's start to end on the server), the fitted
overhead per expert (slope of wall against K), the median and max time from Scheduled to
Running of the expert runs, API requests per expert (the server's access log), server
errors ("database is locked", HTTP 5xx) and lost or duplicated jobs.

    .venv/bin/python benchmarks/bench_orchestration_scale.py [--threads 1]
        [--ks 8,64,256] [--deployment-ks 8,64] [--databases postgresql,sqlite] [--full]

`--full` adds K = 256 for the deployment contender (long: a process per child).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.postgres import PostgresServer, start_postgres  # noqa: E402

from pec.runs import layout  # noqa: E402

PREFECT = str(Path(sys.executable).parent / "prefect")
SITE = REPO / "tests" / "support" / "zero_cost_site"
RUN_TIMEOUT_S = 1800.0
ACCESS = re.compile(r'"(GET|POST|PATCH|PUT|DELETE) /api/(\S*) HTTP/[\d.]+" (\d{3})')
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GOAL = {"overhead_mapped_s": 0.15, "ratio_256_64": 4.5, "deployment_flat": 0.25}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_time(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


@dataclass
class Measured:
    database: str
    contender: str
    K: int
    wall_s: float
    sched_to_run_median_s: float
    sched_to_run_max_s: float
    requests: int
    server_errors: int
    locked: int
    lost: int
    duplicated: int
    state: str
    failed_endpoints: dict[str, int] = field(default_factory=dict)

    def row(self) -> str:
        return (
            f"| {self.database} | {self.contender} | {self.K} | {self.wall_s:.1f} | "
            f"{self.sched_to_run_median_s:.2f} / {self.sched_to_run_max_s:.1f} | "
            f"{self.requests / self.K:.1f} | {self.locked} / {self.server_errors} | "
            f"{self.lost} / {self.duplicated} | {self.state} |"
        )


@dataclass
class Stack:
    """A server on one database, pool `pec-local` with 2 workers, `pec/main` and
    `pec-expert/local` deployed."""

    database: str
    home: Path
    api_url: str
    env: dict[str, str]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def server_log(self) -> str:
        return (self.home / "server.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in reversed(self.processes):
            for _ in range(2):
                if process.poll() is not None:
                    break
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    continue
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def start_stack(database: str, postgres: PostgresServer | None, threads: int) -> Stack:
    home = Path(tempfile.mkdtemp(prefix=f"pec-p8-{database}-"))
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
        "PREFECT_SERVER_LOGGING_LEVEL": "INFO",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": str(threads),
    }
    env.pop("PREFECT_PROFILE", None)
    server_env = dict(env)
    if postgres is not None:
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = postgres.create_database(
            f"p8_{uuid.uuid4().hex[:8]}"
        )
    stack = Stack(database, home, api_url, env)
    with open(home / "server.log", "wb") as out:
        stack.processes.append(
            subprocess.Popen(
                [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
                cwd=REPO,
                env=server_env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or stack.processes[0].poll() is not None:
            stack.stop()
            raise SystemExit(f"error: prefect server ({database}) did not start; see {home}")
        time.sleep(0.5)
    for args in (
        ["work-pool", "create", "pec-local", "--type", "process"],
        ["--no-prompt", "deploy", "--name", "main", "--name", "local"],
    ):
        done = subprocess.run(
            [PREFECT, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            stack.stop()
            raise SystemExit(f"error: prefect {' '.join(args)}: {done.stderr[-400:]}")
    worker_env = {
        **env,
        "PYTHONPATH": os.pathsep.join([str(SITE), str(REPO)]),
        "PEC_TEST_ZERO_COST": "1",
    }
    for i in range(2):
        with open(home / f"worker-{i}.log", "wb") as out:
            stack.processes.append(
                subprocess.Popen(
                    [
                        PREFECT,
                        "worker",
                        "start",
                        "--pool",
                        "pec-local",
                        "--limit",
                        "4",
                        "--name",
                        f"p8-worker-{i}",
                    ],
                    cwd=REPO,
                    env=worker_env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return stack


def access_counts(log: str) -> tuple[int, Counter[str]]:
    """(requests, HTTP 5xx responses by endpoint) in a slice of the server's log."""
    requests = 0
    failed: Counter[str] = Counter()
    for match in ACCESS.finditer(log):
        requests += 1
        if int(match.group(3)) >= 500:
            failed[
                f"{match.group(1)} /api/{UUID.sub('{id}', match.group(2))} {match.group(3)}"
            ] += 1
    return requests, failed


def job_runs(
    stack: Stack, contender: str, run_name: str, parent_id: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The expert jobs of one iteration (child flow runs or task runs) and their names."""
    runs: list[dict[str, Any]] = []
    offset = 0
    if contender == "deployment":
        body: dict[str, Any] = {"flows": {"name": {"any_": ["pec-expert"]}}, "limit": 200}
        while True:
            page = stack.api("POST", "/flow_runs/filter", {**body, "offset": offset})
            runs.extend(page)
            if len(page) < 200:
                break
            offset += 200
        runs = [r for r in runs if r["parameters"]["spec"]["run_name"] == run_name]
        names = [
            f"{r['parameters']['spec']['kind']}-{r['parameters']['spec']['expert_id']}"
            for r in runs
        ]
        return runs, names
    body = {"flow_runs": {"id": {"any_": [parent_id]}}, "limit": 200}
    while True:
        page = stack.api("POST", "/task_runs/filter", {**body, "offset": offset})
        runs.extend(page)
        if len(page) < 200:
            break
        offset += 200
    runs = [r for r in runs if r["name"].startswith(("train-expert-", "evaluate-expert-"))]
    return runs, [r["name"] for r in runs]


def _final(run: dict[str, Any]) -> bool:
    state = run.get("state") or {}
    return state.get("type") in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


def one_iteration(stack: Stack, contender: str, K: int) -> Measured:
    run_name = f"p8-{contender[:3]}-{K}-{uuid.uuid4().hex[:4]}"
    store = stack.home / "store"
    overrides: dict[str, Any] = {
        "K": K,
        "max_parallel_experts": K,
        "max_pec_iterations": 1,
        "init_pool_size": max(200, 2 * K),  # the initial pool must hold a design per expert
    }
    if contender == "deployment":
        overrides |= {"executor": "deployment", "expert_deployment": "pec-expert/local"}
    (deployment,) = stack.api(
        "POST", "/deployments/filter", {"deployments": {"name": {"any_": ["main"]}}}
    )
    log_start = len(stack.server_log())
    for attempt in range(5):  # a busy SQLite server answers 503 ('database is locked')
        try:
            parent = stack.api(
                "POST",
                f"/deployments/{deployment['id']}/create_flow_run",
                {
                    "parameters": {
                        "run_name": run_name,
                        "store": str(store),
                        "config": "configs/tiny.yaml",
                        "overrides": overrides,
                        "chain": False,
                    }
                },
            )
            break
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code < 500 or attempt == 4:
                raise
            time.sleep(2.0)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    own_requests = 1  # the bench's own: creating the run, then polling it (not counted)
    while True:
        own_requests += 1
        parent = stack.api("GET", f"/flow_runs/{parent['id']}")
        if parent["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        if time.monotonic() > deadline:
            break
        time.sleep(1.0)
    time.sleep(2.0)  # the last log lines of the run
    requests, failed = access_counts(stack.server_log()[log_start:])
    requests -= own_requests
    errors = sum(failed.values())
    locked = stack.server_log()[log_start:].count("database is locked")
    start, end = parse_time(parent.get("start_time")), parse_time(parent.get("end_time"))
    wall = (end - start) if start is not None and end is not None else float("nan")

    # task-run states reach the server as events, recorded a moment later: let them settle
    settle = time.monotonic() + 60.0
    runs, job_names = job_runs(stack, contender, run_name, parent["id"])
    while time.monotonic() < settle and not all(_final(r) for r in runs):
        time.sleep(2.0)
        runs, job_names = job_runs(stack, contender, run_name, parent["id"])
    jobs = Counter(job_names)
    waits = [
        parse_time(r["start_time"]) - parse_time(r["expected_start_time"])  # type: ignore[operator]
        for r in runs
        if r.get("start_time") and r.get("expected_start_time")
    ]
    not_completed = sum(1 for r in runs if not _completed(r))
    results = sum(1 for k in range(K) if (store / layout.train_result_key(run_name, k, 0)).exists())
    lost = (K - results) + not_completed  # a training with no result.json; a job not Completed
    duplicated = sum(n - 1 for n in jobs.values() if n > 1)
    return Measured(
        stack.database,
        contender,
        K,
        wall,
        statistics.median(waits) if waits else float("nan"),
        max(waits) if waits else float("nan"),
        requests,
        errors,
        locked,
        lost,
        duplicated,
        parent["state"]["type"],
        dict(failed),
    )


def _completed(run: dict[str, Any]) -> bool:
    return bool(run.get("state")) and run["state"]["type"] == "COMPLETED"


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of wall time against K (seconds per expert)."""
    if len(points) < 2:
        return float("nan")
    xs, ys = [float(k) for k, _ in points], [w for _, w in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def ks(text: str) -> list[int]:
    return [int(k) for k in text.split(",") if k.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", type=ks, default=[8, 64, 256], help="K for the mapped contender")
    parser.add_argument("--deployment-ks", type=ks, default=[8, 64])
    parser.add_argument("--databases", default="postgresql,sqlite")
    parser.add_argument("--full", action="store_true", help="deployment also at K = 256")
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per process")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--keep-logs", type=Path, default=None, help="copy server logs here")
    args = parser.parse_args(argv)
    databases = [d for d in args.databases.split(",") if d]
    for d in databases:
        if d not in ("sqlite", "postgresql"):
            parser.error(f"--databases: {d!r} is neither sqlite nor postgresql")
    deployment_ks = sorted(set(args.deployment_ks) | ({256} if args.full else set()))
    started = time.monotonic()
    postgres = start_postgres() if "postgresql" in databases else None
    rows: list[Measured] = []
    try:
        for database in databases:
            stack = start_stack(
                database, postgres if database == "postgresql" else None, args.threads
            )
            try:
                # one warm-up iteration (imports, first task-run records), not counted
                one_iteration(stack, "mapped", 2)
                for contender, sizes in (("mapped", args.ks), ("deployment", deployment_ks)):
                    for K in sizes:
                        measured = one_iteration(stack, contender, K)
                        rows.append(measured)
                        print(measured.row(), flush=True)
            finally:
                stack.stop()
                if args.keep_logs is not None:
                    args.keep_logs.mkdir(parents=True, exist_ok=True)
                    for log in stack.home.glob("*.log"):
                        shutil.copy(log, args.keep_logs / f"{database}-{log.name}")
                shutil.rmtree(stack.home, ignore_errors=True)
    finally:
        if postgres is not None:
            postgres.stop()

    print()
    print(
        "| database | contender | K | wall per iteration (s) | Scheduled->Running median / max (s) "
        "| API requests per expert | 'database is locked' / 5xx | lost / duplicated | state |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for measured in rows:
        print(measured.row())
    print()
    for measured in rows:
        if measured.failed_endpoints:
            print(
                f"5xx of {measured.database} {measured.contender} K={measured.K}: "
                f"{measured.failed_endpoints}"
            )
    for database in databases:
        for contender in ("mapped", "deployment"):
            points = [
                (m.K, m.wall_s) for m in rows if m.database == database and m.contender == contender
            ]
            if not points:
                continue
            per_expert = {k: w / k for k, w in points}
            line = (
                f"{database} {contender}: fitted overhead {slope(points):.3f} s per expert; "
                "wall/K " + ", ".join(f"K={k}: {v:.3f} s" for k, v in sorted(per_expert.items()))
            )
            walls = dict(points)
            if 64 in walls and 256 in walls:
                line += f"; T(256)/T(64) = {walls[256] / walls[64]:.2f}"
            if contender == "deployment" and 8 in per_expert and 64 in per_expert:
                change = per_expert[64] / per_expert[8] - 1
                line += f"; overhead per expert K=64 vs K=8: {change:+.0%}"
            print(line)
    print(
        f"\ntotal bench time {time.monotonic() - started:.0f} s; goals (PostgreSQL): mapped "
        f"overhead <= {GOAL['overhead_mapped_s']} s/expert, T(256)/T(64) <= "
        f"{GOAL['ratio_256_64']}, deployment overhead per expert flat within "
        f"+-{GOAL['deployment_flat']:.0%} from K=8 to 64, no error, nothing lost or doubled"
    )
    if args.json is not None:
        args.json.write_text(json.dumps([m.__dict__ for m in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
