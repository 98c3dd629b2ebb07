"""Children that cannot double, results recorded as they finish (issue 21, items 2 and 3).

A real `prefect server`, one process worker on `pec-local`, `pec/main` driving K=8 expert
children on `pec-expert/local` (`executor: deployment`). The experts are zero-cost doubles
(tests/support/zero_cost_site) held in flight by release files, so the test decides when
each finishes: experts 0-3 finish, the parent is SIGKILLed while 4-7 still train, and a
Retry of the parent must adopt the four running children and the four finished ones
instead of starting new ones. Every process started here is stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_flow_deployment import (
    PREFECT,
    free_port,
    start_logged,
    stop,
    wait_healthy,
    worker_let_go,
)

from pec.runs import layout
from pec.runs.store import open_store

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "tests" / "support" / "zero_cost_site"
K = 8
TIMEOUT_S = 240.0


@dataclass
class ScaleStack:
    api_url: str
    env: dict[str, str]
    home: Path
    hold_dir: Path
    processes: list[subprocess.Popen[bytes]]

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [PREFECT, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.api("GET", f"/flow_runs/{flow_run_id}")
        return run

    def children(self, run_name: str) -> list[dict[str, Any]]:
        """Every `pec-expert` flow run of this PEC run."""
        body = {"flows": {"name": {"any_": ["pec-expert"]}}, "limit": 200}
        runs: list[dict[str, Any]] = self.api("POST", "/flow_runs/filter", body)
        return [r for r in runs if r["parameters"]["spec"]["run_name"] == run_name]

    def log_tail(self) -> str:
        parts = []
        for name in ("server.log", "worker.log"):
            lines = (self.home / name).read_text(errors="replace").splitlines()[-80:]
            parts.append(f"--- {name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def until(self, what: str, check: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        raise AssertionError(f"not after {timeout} s: {what}\n{self.log_tail()}")


@pytest.fixture(scope="module")
def scale_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScaleStack]:
    home = tmp_path_factory.mktemp("prefect-scale")
    hold_dir = home / "hold"
    hold_dir.mkdir()
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "PEC_CHILD_POLL_S": "1",
    }
    env.pop("PREFECT_PROFILE", None)
    worker_env = {
        **env,
        "PYTHONPATH": os.pathsep.join([str(SITE), str(REPO)]),
        "PEC_TEST_ZERO_COST": "1",
        "PEC_TEST_HOLD_DIR": str(hold_dir),
    }
    processes: list[subprocess.Popen[bytes]] = []
    server = start_logged(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env,
        home / "server.log",
    )
    processes.append(server)
    try:
        wait_healthy(api_url, server, timeout=120)
        stack = ScaleStack(api_url, env, home, hold_dir, processes)
        stack.cli("work-pool", "create", "pec-local", "--type", "process")
        stack.cli("--no-prompt", "deploy", "--name", "main", "--name", "local")
        processes.append(
            start_logged(
                [PREFECT, "worker", "start", "--pool", "pec-local"], worker_env, home / "worker.log"
            )
        )
        yield stack
    finally:
        for process in reversed(processes[1:]):
            stop(process, signals=2, grace=15)
        stop(server, signals=1, grace=30)


def test_a_sigkilled_parent_retried_adopts_its_children_and_loses_no_result(
    scale_stack: ScaleStack, tmp_path: Path
) -> None:
    stack = scale_stack
    run_name = f"adopt-{uuid.uuid4().hex[:6]}"
    location = str(tmp_path / "store")
    parameters = {
        "run_name": run_name,
        "store": location,
        "config": "configs/tiny.yaml",
        "chain": False,
        "overrides": {
            "K": K,
            "max_parallel_experts": K,
            "max_pec_iterations": 1,
            "executor": "deployment",
            "expert_deployment": "pec-expert/local",
        },
    }
    output = stack.cli("deployment", "run", "pec/main", "--params", json.dumps(parameters))
    parent_id = next(t for t in output.replace("'", " ").split() if _is_uuid(t))

    def trains() -> list[dict[str, Any]]:
        return [c for c in stack.children(run_name) if c["parameters"]["spec"]["kind"] == "train"]

    def states(runs: list[dict[str, Any]]) -> Counter[str]:
        return Counter(r["state"]["type"] for r in runs)

    stack.until("8 training children running", lambda: states(trains())["RUNNING"] == K)
    for k in range(4):  # experts 0-3 finish while the parent lives
        (stack.hold_dir / f"train-{k}").touch()
    store = open_store(location)
    finished = [layout.train_result_key(run_name, k, 0) for k in range(4)]
    # item 3: each result is recorded as its job ends, while 4-7 still train
    stack.until("results of experts 0-3 recorded", lambda: all(map(store.exists, finished)))
    assert states(trains()) == Counter({"COMPLETED": 4, "RUNNING": 4})

    pid = str(stack.flow_run(parent_id)["infrastructure_pid"])
    os.kill(int(pid.rsplit(":", 1)[-1]), signal.SIGKILL)
    stack.until("the parent is Crashed", lambda: _state(stack, parent_id) == "CRASHED")
    assert all(map(store.exists, finished))  # a crash loses only the jobs still running
    stack.until("the worker let go of the parent", lambda: worker_let_go(stack.api, parent_id))

    stack.cli("flow-run", "retry", parent_id)
    stack.until(
        "the retried parent is running",
        lambda: (
            stack.flow_run(parent_id)["run_count"] >= 2 and _state(stack, parent_id) == "RUNNING"
        ),
    )
    time.sleep(5.0)  # time for a faulty retry to launch second children
    for k in range(4, K):
        (stack.hold_dir / f"train-{k}").touch()
    stack.until(
        "the retried parent is final",
        lambda: _state(stack, parent_id) in ("COMPLETED", "FAILED", "CRASHED"),
    )
    assert _state(stack, parent_id) == "COMPLETED", stack.log_tail()

    # exactly one child per job, each Completed, and one result.json per expert
    children = stack.children(run_name)
    jobs = Counter(
        (c["parameters"]["spec"]["kind"], c["parameters"]["spec"]["expert_id"]) for c in children
    )
    assert jobs == Counter({(kind, k): 1 for kind in ("train", "eval") for k in range(K)})
    assert states(children) == Counter({"COMPLETED": 2 * K})
    results = [k for k in store.list(f"{run_name}/checkpoints/") if k.endswith("result.json")]
    assert sorted(results) == sorted(layout.train_result_key(run_name, k, 0) for k in range(K))


def _state(stack: ScaleStack, flow_run_id: str) -> str:
    return str(stack.flow_run(flow_run_id)["state"]["type"])


def _is_uuid(token: str) -> bool:
    try:
        uuid.UUID(token)
    except ValueError:
        return False
    return True
