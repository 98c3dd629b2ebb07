"""prefect.yaml: the deployments the flows, docs and the lead's end-to-end test rely on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BUILD = "prefect_docker.deployments.steps.build_docker_image"
PUSH = "prefect_docker.deployments.steps.push_docker_image"
SET_WORKDIR = "prefect.deployments.steps.set_working_directory"


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return data


@pytest.fixture(scope="module")
def deployments(project: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in project["deployments"]}


def test_deployment_names_and_entrypoints(deployments: dict[str, dict[str, Any]]) -> None:
    assert set(deployments) == {"main", "main-gpu", "gpu", "local", "k8s"}
    assert deployments["main"]["entrypoint"] == "flows/pec_flow.py:pec_flow"
    assert deployments["main-gpu"]["entrypoint"] == "flows/pec_flow.py:pec_flow"
    assert deployments["gpu"]["entrypoint"] == "flows/expert_flow.py:pec_expert"
    assert deployments["local"]["entrypoint"] == "flows/expert_flow.py:pec_expert"
    assert deployments["local"]["work_pool"]["name"] == "pec-local"
    assert deployments["k8s"]["entrypoint"] == "flows/expert_flow.py:pec_expert"
    assert deployments["k8s"]["work_pool"]["name"] == "pec-k8s"


@pytest.mark.parametrize("name", ["main", "main-gpu", "gpu", "local", "k8s"])
def test_entrypoint_files_exist(deployments: dict[str, dict[str, Any]], name: str) -> None:
    path, function = deployments[name]["entrypoint"].split(":")
    assert re.fullmatch(r"flows/\w+\.py", path) and function.isidentifier()
    assert (ROOT / path).is_file(), f"{path} is missing (the flows land with the lead's work)"


def test_main_is_the_embedded_local_default(deployments: dict[str, dict[str, Any]]) -> None:
    main = deployments["main"]
    assert main["work_pool"]["name"] == "pec-local"
    assert main["parameters"]["config"] == "configs/embedded.yaml"
    assert "run_name" not in main["parameters"], "run_name is chosen per run"
    # No build/push (no Docker needed to deploy it) and no pull: Prefect pins the
    # directory `prefect deploy` runs in, so no absolute path is committed.
    assert not {"build", "push", "pull"} & set(main)


def test_main_example_schedule_is_inactive(deployments: dict[str, dict[str, Any]]) -> None:
    (schedule,) = deployments["main"]["schedules"]
    assert schedule["active"] is False
    assert len(schedule["cron"].split()) == 5
    assert schedule["parameters"]["run_name"]


def test_config_files_referenced_exist(deployments: dict[str, dict[str, Any]]) -> None:
    config = deployments["main"]["parameters"]["config"]
    assert (ROOT / config).is_file(), f"{config} is missing (configs land with the lead's work)"


@pytest.mark.parametrize(("name", "count"), [("main-gpu", -1), ("gpu", 1)])
def test_gpu_deployments_request_nvidia_devices(
    deployments: dict[str, dict[str, Any]], name: str, count: int
) -> None:
    pool = deployments[name]["work_pool"]
    assert pool["name"] == "pec-gpu"
    variables = pool["job_variables"]
    assert variables["image"] == "{{ build-image.image }}"
    kwargs = variables["container_create_kwargs"]
    assert kwargs["device_requests"] == [
        {"driver": "nvidia", "count": count, "capabilities": [["gpu"]]}
    ]
    assert kwargs["shm_size"].endswith("g")
    env = variables["env"]
    assert env["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "true"
    assert env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] == "s3-bucket/pec-results"
    for var in (
        "PEC_STORE",
        "PEC_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ):
        assert env[var] == "{{ $" + var + " }}", f"{var} must come from the environment"


@pytest.mark.parametrize("name", ["main-gpu", "gpu", "k8s"])
def test_gpu_build_push_pull(deployments: dict[str, dict[str, Any]], name: str) -> None:
    dep = deployments[name]
    (build,) = dep["build"]
    step = build[BUILD]
    assert step["id"] == "build-image"
    assert step["dockerfile"] == "docker/Dockerfile.gpu"
    assert step["pull"] is False
    assert "pytorch" in step["buildargs"]["BASE_IMAGE"]  # a CUDA torch base: no NGC image
    assert (ROOT / step["dockerfile"]).is_file()
    (push,) = dep["push"]
    assert push[PUSH]["image_name"] == "{{ build-image.image_name }}"
    assert push[PUSH]["tag"] == "{{ build-image.tag }}"
    assert dep["pull"] == [{SET_WORKDIR: {"directory": "/opt/pec"}}]


def test_no_hard_wired_concurrency(deployments: dict[str, dict[str, Any]]) -> None:
    """Experts in flight follow the run's max_parallel_experts and the workers' --limit
    (issue 21, item 5): no deployment carries a fixed limit of its own."""
    for name, deployment in deployments.items():
        assert "concurrency_limit" not in deployment, name
    assert deployments["main-gpu"]["parameters"]["overrides"]["backend"] == "isaaclab"


def test_no_top_level_steps_leak_into_main(project: dict[str, Any]) -> None:
    # Top-level build/pull would apply to `main` too and make it need Docker.
    assert not {"build", "push", "pull"} & set(project)
    assert project["name"] == "pec"


def test_no_secrets_or_machine_paths() -> None:
    text = (ROOT / "prefect.yaml").read_text()
    assert str(ROOT.parent) + "/" not in text  # the folder this checkout lives in
    assert not re.search(r"(/home/|/Users/|/tmp/|/root/)", text)
    assert not re.search(r"AKIA[0-9A-Z]{12}", text)
    for line in text.splitlines():
        if re.search(r"(SECRET|PASSWORD|KEY_ID)\w*:", line):
            assert "{{ $" in line, line


def test_gpu_pool_template_defaults() -> None:
    template = json.loads((ROOT / "deployments" / "docker-gpu-pool.json").read_text())
    assert template["job_configuration"]["container_create_kwargs"] == (
        "{{ container_create_kwargs }}"
    )
    props = template["variables"]["properties"]
    kwargs = props["container_create_kwargs"]["default"]
    assert kwargs["device_requests"][0]["capabilities"] == [["gpu"]]
    assert kwargs["shm_size"] == "16g"
    assert props["env"]["default"]["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] == (
        "s3-bucket/pec-results"
    )
    assert props["image"]["default"].startswith("pec-isaaclab")


@pytest.mark.parametrize("script", ["setup_prefect.py", "zombie_automation.py"])
def test_setup_scripts_help_and_unreachable_server(script: str, tmp_path: Path) -> None:
    path = ROOT / "deployments" / script
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    shown = subprocess.run(
        [sys.executable, str(path), "--help"], env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0 and "usage:" in shown.stdout
    down = subprocess.run(
        [sys.executable, str(path)],
        env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert down.returncode == 1
    assert "Prefect server unreachable at http://127.0.0.1:9/api" in down.stderr
    assert "Traceback" not in down.stderr
