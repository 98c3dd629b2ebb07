"""A Prefect Docker work pool for real: a docker worker runs `pec-expert` flow runs in
containers of pec's CPU image, while `pec/main` (process pool) drives one iteration with
`executor: deployment` against the S3 store.

This is the GPU-host layout of docs/DEPLOYING.md on a CPU: the pools and the results block
come from deployments/setup_prefect.py, the pool template from docker-gpu-pool.json, and
the expert deployment differs from prefect.yaml's `gpu` only in its image and in sending
no GPU request. Every process started here is stopped by PID at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from support.docker_engine import DockerEngine
from support.s3_server import S3TestServer
from test_flow_deployment import PREFECT, free_port, start_logged, stop, wait_healthy

from pec.runs import layout
from pec.runs.state_io import load_state
from pec.runs.store import S3Store

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
POOL = "pec-gpu"
EXPERT_DEPLOYMENT = "cpu-docker"
RUN_TIMEOUT_S = 600.0


@dataclass
class DockerPoolStack:
    api_url: str
    env: dict[str, str]
    home: Path
    bucket: str
    image: str

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [PREFECT, *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=180
        )
        if done.returncode != 0:
            raise AssertionError(f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def flow_runs(self) -> list[dict[str, Any]]:
        response = httpx.post(
            f"{self.api_url}/flow_runs/filter",
            json={"sort": "EXPECTED_START_TIME_ASC"},
            timeout=30,
        )
        response.raise_for_status()
        runs: list[dict[str, Any]] = response.json()
        return runs

    def log_tail(self) -> str:
        parts = []
        for name in ("server.log", "process-worker.log", "docker-worker.log"):
            path = self.home / name
            text = path.read_text(errors="replace").splitlines()[-80:] if path.exists() else []
            parts.append(f"--- {name}\n" + "\n".join(text))
        return "\n".join(parts)


def expert_prefect_file(path: Path, image: str, s3_env: dict[str, str]) -> Path:
    """prefect.yaml's `gpu` deployment, on the CPU image and without a GPU request."""
    document = {
        "name": "pec",
        "prefect-version": "3.9.1",
        "deployments": [
            {
                "name": EXPERT_DEPLOYMENT,
                "entrypoint": "flows/expert_flow.py:pec_expert",
                "pull": [
                    {"prefect.deployments.steps.set_working_directory": {"directory": "/opt/pec"}}
                ],
                "work_pool": {
                    "name": POOL,
                    "job_variables": {
                        "image": image,
                        "image_pull_policy": "IfNotPresent",
                        # the test's API and S3 server listen on the host's loopback
                        "network_mode": "host",
                        "env": {
                            **s3_env,
                            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
                            "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": "s3-bucket/pec-results",
                        },
                        "container_create_kwargs": {"shm_size": "256m"},
                    },
                },
            }
        ],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def docker_pool_stack(
    tmp_path_factory: pytest.TempPathFactory,
    s3_server: S3TestServer,
    docker_engine: DockerEngine,
    pec_cpu_image: str,
) -> Iterator[DockerPoolStack]:
    home = tmp_path_factory.mktemp("prefect-docker-pool")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    bucket = s3_server.make_bucket()
    s3_env = {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "PEC_S3_ENDPOINT_URL": s3_server.endpoint_url,
    }
    env = {
        **os.environ,
        **s3_env,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MPLBACKEND": "Agg",
        "DOCKER_HOST": docker_engine.host,
        "PEC_STORE": f"s3://{bucket}/runs",
    }
    env.pop("PREFECT_PROFILE", None)
    server = start_logged(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        env,
        home / "server.log",
    )
    workers: list[subprocess.Popen[bytes]] = []
    try:
        wait_healthy(api_url, server, timeout=120)
        setup = subprocess.run(
            [sys.executable, "deployments/setup_prefect.py", "--gpu-pool-limit", "2"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert setup.returncode == 0, setup.stdout + setup.stderr
        stack = DockerPoolStack(api_url, env, home, bucket, pec_cpu_image)
        stack.cli("--no-prompt", "deploy", "--name", "main")
        prefect_file = expert_prefect_file(home / "expert-prefect.yaml", pec_cpu_image, s3_env)
        stack.cli(
            "--no-prompt",
            "deploy",
            "--prefect-file",
            str(prefect_file),
            "--name",
            EXPERT_DEPLOYMENT,
        )
        workers.append(
            start_logged(
                [PREFECT, "worker", "start", "--pool", "pec-local", "--type", "process"],
                env,
                home / "process-worker.log",
            )
        )
        workers.append(
            start_logged(
                [PREFECT, "worker", "start", "--pool", POOL, "--type", "docker"],
                env,
                home / "docker-worker.log",
            )
        )
        yield stack
    finally:
        for worker in workers:
            stop(worker, signals=2, grace=20)
        stop(server, signals=1, grace=30)


def wait_until_final(stack: DockerPoolStack, run_name: str) -> list[dict[str, Any]]:
    """The iteration's flow run and its expert runs, once the iteration is final."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        mine = [r for r in stack.flow_runs() if run_name in r["name"]]
        parent = [r for r in mine if r["name"].startswith("pec-")]
        bad = [r for r in mine if r["state"]["type"] in ("FAILED", "CRASHED", "CANCELLED")]
        if bad:
            raise AssertionError(
                f"flow runs did not complete: {[(r['name'], r['state']) for r in bad]}\n"
                f"{stack.log_tail()}"
            )
        if parent and all(r["state"]["type"] == "COMPLETED" for r in parent):
            return mine
        time.sleep(1.0)
    raise AssertionError(
        f"not complete after {RUN_TIMEOUT_S} s: "
        f"{[(r['name'], r['state']['type']) for r in mine]}\n{stack.log_tail()}"
    )


def test_main_deployment_runs_its_experts_in_docker_pool_containers(
    docker_pool_stack: DockerPoolStack, docker_engine: DockerEngine, s3_server: S3TestServer
) -> None:
    stack = docker_pool_stack
    run_name = f"pool-{uuid.uuid4().hex[:6]}"
    parameters = {
        "run_name": run_name,
        "store": f"s3://{stack.bucket}/runs",
        "config": "configs/tiny.yaml",
        "overrides": {
            "executor": "deployment",
            "expert_deployment": f"pec-expert/{EXPERT_DEPLOYMENT}",
            "max_pec_iterations": 1,
            "max_parallel_experts": 2,
        },
    }
    stack.cli("deployment", "run", "pec/main", "--params", json.dumps(parameters))

    runs = wait_until_final(stack, run_name)

    names = sorted(r["name"] for r in runs)
    assert names == sorted(
        [f"pec-{run_name}-it0"]
        + [f"expert-{kind}-{k}-{run_name}-it0" for kind in ("train", "eval") for k in (0, 1)]
    )
    for run in runs:
        assert run["state"]["type"] == "COMPLETED", (run["name"], run["state"])
        if run["name"].startswith("expert-"):
            assert run["work_pool_name"] == POOL
            # the docker worker records "<engine url>:<container id>" for cancellation
            assert run["infrastructure_pid"].count(":") >= 1
        else:
            assert run["work_pool_name"] == "pec-local"

    store = S3Store(stack.bucket, "runs", s3_server.settings())
    loaded = load_state(store, run_name)
    assert loaded is not None
    state = loaded[0]
    assert state.iteration == 1
    for k in (0, 1):
        assert store.exists(layout.best_checkpoint_key(run_name, k, 0))
        assert state.experts[k].checkpoint == store.uri(layout.best_checkpoint_key(run_name, k, 0))
    assert store.exists(layout.scores_key(run_name, 0))
    # the worker removes finished containers (auto_remove); a child reports Completed from
    # inside its container, so the last one may still be exiting when the parent is done
    assert containers_gone(docker_engine, stack.image, timeout=60.0)


def containers_gone(engine: DockerEngine, image: str, timeout: float) -> bool:
    client = engine.client()
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not client.containers.list(all=True, filters={"ancestor": image}):
                return True
            time.sleep(0.5)
        return False
    finally:
        client.close()
