"""One GPU per expert on a multi-GPU Docker host, and pool limits from the config (issue 21,
items 4 and 5).

deployments/setup_prefect.py lays the GPU pool out as one work queue per GPU index and takes
the pool's limit from the config; the iteration flow sends expert k to queue `gpu-<k mod G>`
with `device_ids: ["<k mod G>"]` instead of prefect.yaml's `count: 1` (which Docker turns
into GPU 0 for every container). The Docker test builds each child's container exactly as
the docker worker does (Prefect's own job-variable merge over the pool template, then
prefect-docker's container settings) and creates it on the real engine, then reads the
device requests back from `docker inspect`. No GPU is needed: the containers are created,
never started.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from support.docker_engine import DockerEngine

from flows.children import start_or_adopt_child

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deployments"))

import setup_prefect  # noqa: E402

pytestmark = pytest.mark.usefixtures("prefect_harness")

GPUS_PER_HOST = 2


def prefect_yaml_gpu_variables() -> dict[str, Any]:
    """The GPU request of prefect.yaml's `gpu` deployment (templated values left out)."""
    project = yaml.safe_load((REPO / "prefect.yaml").read_text())
    (gpu,) = [d for d in project["deployments"] if d["name"] == "gpu"]
    return {"container_create_kwargs": gpu["work_pool"]["job_variables"]["container_create_kwargs"]}


@pytest.fixture(scope="module")
def gpu_pool(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, str]:
    """`setup_prefect.py --gpus-per-host 2 --config <max_parallel_experts: 3>` on the harness,
    and a `pec-expert` deployment on that pool with prefect.yaml's GPU request."""
    suffix = uuid.uuid4().hex[:6]
    pool, local = f"pec-gpu-{suffix}", f"pec-local-{suffix}"
    config = tmp_path_factory.mktemp("cfg") / "pool.yaml"
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config.write_text(yaml.safe_dump({**tiny, "max_parallel_experts": 3}))
    code = setup_prefect.main(
        [
            "--gpu-pool",
            pool,
            "--local-pool",
            local,
            "--gpus-per-host",
            str(GPUS_PER_HOST),
            "--config",
            str(config),
            "--k8s-pool",
            f"pec-k8s-{suffix}",
            "--skip-results",
        ]
    )
    assert code == 0
    name = f"gpu-{suffix}"
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("pec-expert")
        client.create_deployment(
            flow_id=flow_id,
            name=name,
            work_pool_name=pool,
            job_variables=prefect_yaml_gpu_variables(),
        )
    return {"pool": pool, "deployment": f"pec-expert/{name}", "k8s": f"pec-k8s-{suffix}"}


def launch(deployment: str, experts: range) -> list[FlowRun]:
    key = f"pec/slots-{uuid.uuid4().hex[:6]}/it0/train"
    return [
        start_or_adopt_child(deployment, {}, f"expert-train-{k}", f"{key}-{k}", expert_id=k)
        for k in experts
    ]


def test_setup_lays_out_one_queue_per_gpu_and_the_limit_of_the_config(
    gpu_pool: dict[str, str],
) -> None:
    with get_client(sync_client=True) as client:
        queues = {q.name for q in client.read_work_queues(work_pool_name=gpu_pool["pool"])}
        pool = client.read_work_pool(gpu_pool["pool"])
    assert {"gpu-0", "gpu-1"} <= queues and "gpu-2" not in queues
    assert pool.type == "docker"
    assert pool.concurrency_limit == 3  # the config's max_parallel_experts, not a fixed 4
    with get_client(sync_client=True) as client:
        k8s = client.read_work_pool(gpu_pool["k8s"])
    template = json.loads((REPO / "deployments" / "k8s-gpu-pool.json").read_text())
    assert k8s.type == "kubernetes" and k8s.base_job_template == template


def test_experts_go_round_the_gpu_queues_each_with_its_own_device(
    gpu_pool: dict[str, str],
) -> None:
    children = launch(gpu_pool["deployment"], range(4))
    assert [c.work_queue_name for c in children] == ["gpu-0", "gpu-1", "gpu-0", "gpu-1"]
    for k, child in enumerate(children):
        kwargs = (child.job_variables or {})["container_create_kwargs"]
        (request,) = kwargs["device_requests"]
        assert request["device_ids"] == [str(k % GPUS_PER_HOST)] and "count" not in request
        assert request["driver"] == "nvidia" and request["capabilities"] == [["gpu"]]
        assert kwargs["shm_size"] == "16g"  # the deployment's other settings are kept


def empty_image(engine: DockerEngine) -> str:
    """A tiny local image: enough to create (never start) containers."""
    tag = "pec-test/empty:1"
    client = engine.client()
    try:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            info = tarfile.TarInfo("README")
            info.size = 5
            archive.addfile(info, io.BytesIO(b"empty"))
        client.api.import_image_from_data(buffer.getvalue(), repository=tag.split(":")[0], tag="1")
    finally:
        client.close()
    return tag


@pytest.mark.docker
def test_each_expert_container_requests_only_its_own_gpu(
    gpu_pool: dict[str, str], docker_engine: DockerEngine
) -> None:
    from prefect_docker.worker import DockerWorker, DockerWorkerJobConfiguration

    image = empty_image(docker_engine)
    children = launch(gpu_pool["deployment"], range(GPUS_PER_HOST))

    async def container_settings(child: FlowRun) -> dict[str, Any]:
        async with get_client() as client:
            child = await client.read_flow_run(child.id)
            client_pool = await client.read_work_pool(gpu_pool["pool"])
            # the image the deployment would be built with; an image present locally here
            child.job_variables = {**(child.job_variables or {}), "image": image}
            configuration = await DockerWorkerJobConfiguration.resolve_for_flow_run(
                child, client=client, work_pool=client_pool, worker_name="test"
            )
        worker = DockerWorker(work_pool_name=gpu_pool["pool"])
        docker_client = docker_engine.client()
        try:
            settings: dict[str, Any] = worker._build_container_settings(
                docker_client, configuration
            )
        finally:
            docker_client.close()
        return settings

    created = []
    client = docker_engine.client()
    try:
        for child in children:
            settings = asyncio.run(container_settings(child))
            settings["name"] = f"pec-slot-test-{child.id}"
            settings["command"] = ["true"]
            created.append(client.containers.create(**settings))
        device_ids = []
        for container in created:
            inspected = client.api.inspect_container(container.id)
            (request,) = inspected["HostConfig"]["DeviceRequests"]
            assert request["Driver"] == "nvidia" and request["Capabilities"] == [["gpu"]]
            assert request["Count"] == 0  # not "the first N GPUs"
            device_ids.append(request["DeviceIDs"])
        assert device_ids == [["0"], ["1"]]  # one GPU each, never both on GPU 0
    finally:
        for container in created:
            container.remove(force=True)
        client.close()
