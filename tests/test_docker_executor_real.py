"""The Docker executor against a real engine and pec's CPU image (embedded MuJoCo backend).

One expert's training job runs in a container with the store mounted (local folder) or
reached over the host network (the S3 test server); its result comes back, its log lines
are streamed while it runs, the container is gone afterwards, and a cancel stops it.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support.docker_engine import DockerEngine
from support.s3_server import S3TestServer

from pec.errors import JobError
from pec.jobs.docker_executor import DockerExecutor
from pec.jobs.spec import TrainJobSpec
from pec.runs import layout
from pec.runs.job_records import StoreSpec, TrainJobResult
from pec.runs.store import LocalStore, S3Store, Store

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
TINY_SETTINGS: dict[str, Any] = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())[
    "backend_settings"
]
NUM_ENVS = 4


def write_designs(store: Store, run: str, expert: int, iteration: int) -> tuple[str, str]:
    """Per-environment designs inside the BALLU box, as the flow writes them."""
    rng = np.random.default_rng(11)
    gcr_key, spcf_key = layout.samples_keys(run, expert, iteration)
    for key, values in (
        (gcr_key, rng.uniform(0.75, 0.89, NUM_ENVS)),
        (spcf_key, rng.uniform(0.001, 0.010, NUM_ENVS)),
    ):
        import io

        buffer = io.BytesIO()
        np.save(buffer, values.astype(np.float32), allow_pickle=False)
        store.write_bytes(key, buffer.getvalue())
    return gcr_key, spcf_key


def train_spec(store_spec: StoreSpec, store: Store, run: str, max_iterations: int) -> TrainJobSpec:
    gcr_key, spcf_key = write_designs(store, run, expert=0, iteration=0)
    return TrainJobSpec(
        backend="mujoco",
        store=store_spec,
        run_name=run,
        expert_id=0,
        iteration=0,
        samples_gcr_key=gcr_key,
        samples_spcf_key=spcf_key,
        start_level=0,
        max_iterations=max_iterations,
        num_envs=NUM_ENVS,
        seed=3,
        settings=TINY_SETTINGS,
        timeout_s=300.0,
    )


def open_to_all(root: Path) -> None:
    """The image runs as UID 1000: let it write into a store folder that root created."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)


def containers_of(engine: DockerEngine, run: str) -> list[Any]:
    client = engine.client()
    try:
        return list(client.containers.list(all=True, filters={"label": f"pec.runs.run={run}"}))
    finally:
        client.close()


def assert_trained(result: object, store: Store, run: str) -> None:
    assert isinstance(result, TrainJobResult)
    assert result.warning is None
    assert result.checkpoint_uri == store.uri(layout.best_checkpoint_key(run, 0, 0))
    assert store.exists(layout.best_checkpoint_key(run, 0, 0))
    assert result.metrics["iterations"] == 2.0


class RecordingClient:
    """The real docker-py client; remembers the HostConfig of every container it creates."""

    def __init__(self, engine: DockerEngine) -> None:
        self.client = engine.client()
        self.host_configs: list[dict[str, Any]] = []
        self.envs: list[list[str]] = []  # each container's environment, as the engine has it
        self.containers = self

    def run(self, **kwargs: Any) -> Any:
        # docker-py hands out a new collection per `client.containers`: patch one, use it
        collection = self.client.containers
        original_create = collection.create

        def create(*args: Any, **create_kwargs: Any) -> Any:
            container = original_create(*args, **create_kwargs)
            self.host_configs.append(container.attrs["HostConfig"])
            self.envs.append(list(container.attrs["Config"]["Env"] or []))
            return container

        collection.create = create
        return collection.run(**kwargs)

    def get(self, name: str) -> Any:
        return self.client.containers.get(name)


def test_training_job_in_a_container_with_a_mounted_local_store(
    docker_engine: DockerEngine, pec_cpu_image: str, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    run = f"dock-{uuid.uuid4().hex[:8]}"
    spec = train_spec(StoreSpec(location=str(root)), store, run, max_iterations=2)
    spec = spec.model_copy(update={"threads": 1})  # the thread policy's share for this job
    open_to_all(root)
    lines: list[str] = []
    recording = RecordingClient(docker_engine)
    # no volumes configured: the executor mounts the spec's local store at its own path
    executor = DockerExecutor(
        pec_cpu_image, docker_client_factory=lambda: recording, poll_interval_s=0.2
    )

    result = executor.execute(spec, log=lines.append)

    assert_trained(result, store, run)
    assert any("progress 2/2" in line for line in lines), lines[-20:]
    assert lines[-1].startswith("PEC_JOB_RESULT ")
    assert containers_of(docker_engine, run) == []
    (host_config,) = recording.host_configs
    assert f"{root}:{root}:rw" in host_config["Binds"]
    assert not host_config.get("DeviceRequests")  # gpus=0: a CPU job asks for no device
    (env,) = recording.envs
    assert {"OMP_NUM_THREADS=1", "MKL_NUM_THREADS=1", "OPENBLAS_NUM_THREADS=1"} <= set(env)


def test_user_option_lets_the_container_write_into_a_store_owned_by_the_host_user(
    docker_engine: DockerEngine, pec_cpu_image: str, tmp_path: Path
) -> None:
    # The store stays as created here (0755, owned by this user): UID 1000 could not write.
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    run = f"dock-user-{uuid.uuid4().hex[:8]}"
    spec = train_spec(StoreSpec(location=str(root)), store, run, max_iterations=1)
    executor = DockerExecutor(
        pec_cpu_image, user=f"{os.getuid()}:{os.getgid()}", poll_interval_s=0.2
    )

    result = executor.execute(spec)

    assert isinstance(result, TrainJobResult)
    best = root / layout.best_checkpoint_key(run, 0, 0)
    assert best.stat().st_uid == os.getuid()
    assert containers_of(docker_engine, run) == []


def test_training_job_in_a_container_against_the_s3_store(
    docker_engine: DockerEngine,
    pec_cpu_image: str,
    s3_server: S3TestServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = s3_server.make_bucket()
    store = S3Store(bucket, "runs", s3_server.settings())
    run = f"dock-s3-{uuid.uuid4().hex[:8]}"
    location = StoreSpec(
        location=f"s3://{bucket}/runs", endpoint_url=s3_server.endpoint_url, region="us-east-1"
    )
    spec = train_spec(location, store, run, max_iterations=2)
    # credentials travel by variable name from this (host) environment, never in the spec
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    assert s3_server.secret_key not in spec.model_dump_json()
    lines: list[str] = []
    executor = DockerExecutor(pec_cpu_image, network_mode="host", poll_interval_s=0.2)

    result = executor.execute(spec, log=lines.append)

    assert_trained(result, store, run)
    assert any("progress 1/2" in line for line in lines)
    assert containers_of(docker_engine, run) == []


def test_cancel_stops_the_running_container_and_removes_it(
    docker_engine: DockerEngine, pec_cpu_image: str, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    run = f"dock-cancel-{uuid.uuid4().hex[:8]}"
    spec = train_spec(StoreSpec(location=str(root)), store, run, max_iterations=100_000)
    open_to_all(root)
    cancel = threading.Event()
    seen_running: list[str] = []
    cancelled_at: list[float] = []

    def log(line: str) -> None:
        # The cancel comes from a streamed line, so lines must arrive while the job runs.
        if "progress 1/" in line and not cancel.is_set():
            seen_running.extend(c.status for c in containers_of(docker_engine, run))
            cancelled_at.append(time.monotonic())
            cancel.set()

    executor = DockerExecutor(
        pec_cpu_image, volumes={str(root): str(root)}, poll_interval_s=0.2, stop_timeout_s=20
    )
    with pytest.raises(JobError, match="cancelled by the caller"):
        executor.execute(spec, log=log, cancel_event=cancel)

    assert seen_running == ["running"]
    assert containers_of(docker_engine, run) == []
    # SIGTERM reached the job, which ended at once: no 20 s wait for docker's SIGKILL
    assert time.monotonic() - cancelled_at[0] < 15.0


@pytest.mark.parametrize("gpus", [1, -1])
def test_gpu_request_reaches_the_engine_and_a_failed_start_leaves_no_container(
    docker_engine: DockerEngine, pec_cpu_image: str, tmp_path: Path, gpus: int
) -> None:
    # This machine has no GPU and no NVIDIA runtime: the engine accepts the container with
    # the request, then refuses to start it. The request must be the one configured.
    root = tmp_path / "store"
    root.mkdir()
    store = LocalStore(root)
    run = f"dock-gpu-{uuid.uuid4().hex[:8]}"
    spec = train_spec(StoreSpec(location=str(root)), store, run, max_iterations=2)
    recording = RecordingClient(docker_engine)
    executor = DockerExecutor(pec_cpu_image, gpus=gpus, docker_client_factory=lambda: recording)

    with pytest.raises(JobError, match=r"could not start.*NVIDIA container toolkit"):
        executor.execute(spec)

    (host_config,) = recording.host_configs
    (request,) = host_config["DeviceRequests"]
    assert request["Count"] == gpus
    assert request["Capabilities"] == [["gpu"]]
    assert containers_of(docker_engine, run) == []
