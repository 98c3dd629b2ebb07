"""CI end to end: a real `prefect server`, a process worker, the deployment from prefect.yaml.

`prefect deployment run pec/main` with the tiny config must complete iteration 0 and its
chained successor (iteration 1), with a local folder or the S3-compatible server as the
store. The whole journey runs twice: on a server backed by SQLite (Prefect's default) and
on one backed by PostgreSQL (production's choice; tests/support/postgres.py). Every
process started here is stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.postgres import PostgresServer
from support.s3_server import S3TestServer

from pec.runs import layout
from pec.runs.state_io import load_state
from pec.runs.store import S3Store, Store, open_store

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).parent / "prefect")
RUN_TIMEOUT_S = 300.0
CREDENTIALS_BLOCK = "pec-test-aws"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PrefectStack:
    """A server and a process worker on pool `pec-local`, with `pec/main` deployed."""

    api_url: str
    env: dict[str, str]
    logs: Path
    server: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    database: str  # "sqlite" or "postgresql"
    postgres: PostgresServer | None = None
    postgres_db: str = ""

    def cli(self, *args: str, extra_env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [PREFECT, *args],
            cwd=REPO,
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(method, f"{self.api_url}{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def log_tail(self) -> str:
        parts = []
        for name in ("server.log", "worker.log"):
            text = (self.logs / name).read_text(errors="replace").splitlines()[-60:]
            parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)


def start_logged(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            args,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def wait_healthy(stack_url: str, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"prefect server exited with {server.returncode}")
        try:
            if httpx.get(f"{stack_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after {timeout} s")


def stop(process: subprocess.Popen[bytes], signals: int, grace: float) -> None:
    """`signals` SIGINTs (the worker needs two), then SIGKILL if it is still alive."""
    for _ in range(signals):
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def prefect_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    s3_server: S3TestServer,
) -> Iterator[PrefectStack]:
    database = str(request.param)
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MPLBACKEND": "Agg",
        # the user's shell has the S3 credentials; the worker does not (see below)
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PEC_S3_ENDPOINT_URL": s3_server.endpoint_url,
    }
    env.pop("PREFECT_PROFILE", None)
    # As on a real worker host: no S3 credentials, endpoint or region in its environment.
    # They reach its flow runs only through the AwsCredentials block (docs/DEPLOYING.md §1).
    worker_env = {k: v for k, v in env.items() if not k.startswith(("AWS_", "PEC_S3_"))}
    server_env = dict(env)
    postgres: PostgresServer | None = None
    postgres_db = ""
    if database == "postgresql":
        postgres = request.getfixturevalue("postgres_server")
        postgres_db = f"prefect_{uuid.uuid4().hex[:8]}"
        server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = postgres.create_database(postgres_db)
    server = start_logged(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        server_env,
        home / "server.log",
    )
    worker: subprocess.Popen[bytes] | None = None
    try:
        wait_healthy(api_url, server, timeout=120)
        done = subprocess.run(
            [PREFECT, "work-pool", "create", "pec-local", "--type", "process"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        done = subprocess.run(
            [PREFECT, "--no-prompt", "deploy", "--name", "main"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (
            f"prefect deploy --name main failed:\n{done.stdout}\n{done.stderr}"
        )
        done = subprocess.run(
            [sys.executable, "deployments/save_aws_credentials.py", "--name", CREDENTIALS_BLOCK],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        worker = start_logged(
            [PREFECT, "worker", "start", "--pool", "pec-local"], worker_env, home / "worker.log"
        )
        yield PrefectStack(api_url, env, home, server, worker, database, postgres, postgres_db)
    finally:
        if worker is not None:
            stop(worker, signals=2, grace=15)
        stop(server, signals=1, grace=30)


def flow_runs_of_run(stack: PrefectStack, run_name: str) -> list[dict[str, Any]]:
    runs = stack.api("POST", "/flow_runs/filter", {"sort": "EXPECTED_START_TIME_ASC"})
    return [r for r in runs if r["parameters"].get("run_name") == run_name]


def wait_for_chain(stack: PrefectStack, run_name: str) -> list[dict[str, Any]]:
    """Until iteration 0 and its successor are both final; fails fast on a failed run."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = flow_runs_of_run(stack, run_name)
        states = [r["state"]["type"] for r in runs]
        if any(s in ("FAILED", "CRASHED", "CANCELLED") for s in states):
            raise AssertionError(f"a flow run did not complete: {states}\n{stack.log_tail()}")
        if len(runs) >= 2 and all(s == "COMPLETED" for s in states):
            return runs
        time.sleep(1.0)
    raise AssertionError(
        f"chain not complete after {RUN_TIMEOUT_S} s: "
        f"{[(r['name'], r['state']['type']) for r in runs]}\n{stack.log_tail()}"
    )


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_deployment_run_and_chained_successor_complete(
    prefect_stack: PrefectStack, s3_server: S3TestServer, tmp_path: Path, store_kind: str
) -> None:
    run_name = f"ci-{store_kind}-{uuid.uuid4().hex[:6]}"
    store: Store
    if store_kind == "local":
        location = str(tmp_path / "store")
        store = open_store(location)
    else:
        bucket = s3_server.make_bucket()
        location = f"s3://{bucket}/runs"
        store = S3Store(bucket, "runs", s3_server.settings())
    parameters: dict[str, Any] = {
        "run_name": run_name,
        "store": location,
        "config": "configs/tiny.yaml",
    }
    if store_kind == "s3":  # the documented way for credentials to reach the worker
        parameters["aws_credentials_block"] = CREDENTIALS_BLOCK
    output = prefect_stack.cli("deployment", "run", "pec/main", "--params", json.dumps(parameters))
    assert "pec/main" in output

    runs = wait_for_chain(prefect_stack, run_name)
    assert [r["name"] for r in runs] == [f"pec-{run_name}-it0", f"pec-{run_name}-it1"]
    assert runs[1]["parameters"]["iteration"] == 1
    assert runs[1]["idempotency_key"] == f"{run_name}/it1"
    # the last iteration schedules nothing (a successor would exist before it completed)
    assert len(flow_runs_of_run(prefect_stack, run_name)) == 2

    loaded = load_state(store, run_name)
    assert loaded is not None
    state = loaded[0]
    assert state.iteration == 2
    for k in (0, 1):
        assert store.exists(layout.best_checkpoint_key(run_name, k, 1))
        assert state.experts[k].checkpoint == store.uri(layout.best_checkpoint_key(run_name, k, 1))
    assert store.exists(layout.scores_key(run_name, 1))
    assert store.exists(layout.coverage_plot_key(run_name))
    results = store.list(layout.prefect_results_prefix(run_name))
    assert any("/it1/train-0/" in key for key in results), results
    if prefect_stack.postgres is not None:  # the runs really live in PostgreSQL
        rows = prefect_stack.postgres.psql(
            f"SELECT count(*) FROM flow_run WHERE name LIKE 'pec-{run_name}-it%'",
            database=prefect_stack.postgres_db,
        )
        assert int(rows) == 2


def wait_final(stack: PrefectStack, flow_run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        run = stack.api("GET", f"/flow_runs/{flow_run_id}")
        if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return dict(run)
        time.sleep(1.0)
    raise AssertionError(f"flow run {flow_run_id} not final after {RUN_TIMEOUT_S} s")


def worker_let_go(api: Callable[..., Any], flow_run_id: str) -> bool:
    """Whether the worker has emitted `prefect.worker.executed-flow-run` for this flow run.

    Prefect's process worker proposes Crashed twice for one exit (its runner, then the worker
    itself); a Retry pressed between the two is crashed by the second. The event comes after
    both (docs/DEPLOYING.md §8), so a test retries a crashed run only once this is true.
    """
    body = {
        "filter": {
            "event": {"name": ["prefect.worker.executed-flow-run"]},
            "related": {"id": [f"prefect.flow-run.{flow_run_id}"]},
        },
        "limit": 10,
    }
    return bool(api("POST", "/events/filter", body)["events"])


def flow_run_id_from(output: str) -> str:
    for token in output.replace("'", " ").split():
        try:
            return str(uuid.UUID(token))
        except ValueError:
            continue
    raise AssertionError(f"no flow run id in: {output}")


def test_s3_without_the_credentials_block_says_where_credentials_must_be(
    prefect_stack: PrefectStack, s3_server: S3TestServer
) -> None:
    """The user's shell has AWS_* set, the worker has not: the error says it is the worker."""
    bucket = s3_server.make_bucket()
    parameters = {
        "run_name": f"nocred-{uuid.uuid4().hex[:6]}",
        "store": f"s3://{bucket}/runs",
        "config": "configs/tiny.yaml",
        "chain": False,
    }
    output = prefect_stack.cli("deployment", "run", "pec/main", "--params", json.dumps(parameters))
    run = wait_final(prefect_stack, flow_run_id_from(output))
    assert run["state"]["type"] == "FAILED", run["state"]
    message = run["state"]["message"]
    assert "no S3 credentials in this process" in message
    assert "worker" in message and "aws_credentials_block" in message
    assert s3_server.secret_key not in message
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_retry_redoes_only_the_iteration_pinned_by_its_first_attempt(
    prefect_stack: PrefectStack, tmp_path: Path
) -> None:
    """Issue 13, item 2: a run started without `iteration` pins the one it took; its Retry,
    after the run moved on, must not train the next iteration."""
    run_name = f"pin-{uuid.uuid4().hex[:6]}"
    location = str(tmp_path / "store")
    parameters = {
        "run_name": run_name,
        "store": location,
        "config": "configs/tiny.yaml",
        "chain": False,
    }
    # the first attempt dies (SIGKILL) after expert 0's result is recorded; only once
    fault_env = {
        "PEC_FAULT_POINT": "train-result-recorded:1",
        "PEC_FAULT_ONCE_FILE": str(tmp_path / "fault-fired"),
    }
    output = prefect_stack.cli(
        "deployment",
        "run",
        "pec/main",
        "--params",
        json.dumps(parameters),
        "--job-variable",
        f"env={json.dumps(fault_env)}",
    )
    flow_run_id = flow_run_id_from(output)
    first = wait_final(prefect_stack, flow_run_id)
    assert first["state"]["type"] == "CRASHED", first["state"]
    assert first["parameters"]["iteration"] == 0  # pinned by the first attempt
    assert first["name"] == f"pec-{run_name}-it0"

    # meanwhile the run moves on: iteration 0 is finished elsewhere (the crashed holder's
    # lease is taken over at once: its process is gone)
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "pec"),
            "run",
            "--run_name",
            run_name,
            "--store",
            location,
            "--config",
            "configs/tiny.yaml",
            "--set",
            "max_pec_iterations=1",
        ],
        cwd=REPO,
        env=prefect_stack.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    store = open_store(location)
    loaded = load_state(store, run_name)
    assert loaded is not None and loaded[0].iteration == 1

    # Retry of the crashed flow run: it finds its own iteration done and trains nothing
    deadline = time.monotonic() + 120
    while not worker_let_go(prefect_stack.api, flow_run_id):
        assert time.monotonic() < deadline, "no executed-flow-run event for the crashed run"
        time.sleep(0.5)
    prefect_stack.cli("flow-run", "retry", flow_run_id)
    retried = wait_final(prefect_stack, flow_run_id)
    assert retried["state"]["type"] == "COMPLETED", (retried["state"], prefect_stack.log_tail())
    assert retried["run_count"] >= 2 and retried["parameters"]["iteration"] == 0
    loaded = load_state(store, run_name)
    assert loaded is not None and loaded[0].iteration == 1
    assert not any(key.split("/")[3] == "iter_1" for key in store.list(f"{run_name}/checkpoints/"))
    assert not store.exists(layout.samples_keys(run_name, 0, 1)[0])
