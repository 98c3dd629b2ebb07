"""A real Docker engine and pec's CPU image for tests, registered from conftest.py.

No registry is reachable here, so everything is made locally: Debian's `docker.io` daemon
started by hand on its own socket, a base image from `debootstrap` loaded with
`docker import`, and `docker/Dockerfile.cpu` built on it with the local torch wheel.
The daemon's data root lives in a stable cache folder (`$PEC_DOCKER_CACHE`, default
`~/.cache/pec-docker`) and the image is tagged with a hash of what goes into it, so a
second run on the same machine reuses both and builds nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "local/debian-python:bookworm"
IMAGE_REPOSITORY = "pec-cpu"
WHEEL_DIRS = (Path("/opt/wheels"),)
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_PACKAGES = ("docker.io", "debootstrap")
# What Dockerfile.cpu copies into the image; the image tag is a hash of exactly these.
IMAGE_INPUTS = (
    "docker/Dockerfile.cpu",
    "docker/entrypoint.sh",
    "pyproject.toml",
    "requirements.lock",
    "prefect.yaml",
    "README.md",
    "pec",
    "flows",
    "deployments",
    "configs",
)
# Dockerfile.gpu's own inputs; its code inputs are the CPU image's (its tag is in the hash).
ISAACLAB_REPOSITORY = "pec-isaaclab"
ISAACLAB_IMAGE_INPUTS = (
    "docker/Dockerfile.gpu",
    "docker/requirements-gpu.txt",
    "requirements-isaaclab.txt",
)
KEEP_IMAGES = 3  # pec-cpu tags kept in the cache; older ones are removed after a build
READY_TIMEOUT_S = 60.0
BUILD_TIMEOUT_S = 1200.0


def cache_dir() -> Path:
    """Where the daemon keeps its images between test sessions."""
    root = os.environ.get("PEC_DOCKER_CACHE") or str(Path.home() / ".cache" / "pec-docker")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def docker_module() -> Any:
    """docker-py, imported so that the repository's own docker/ folder cannot shadow it."""
    return importlib.import_module("docker")


def docker_cli() -> str:
    found = shutil.which("docker")
    if found is None:
        raise RuntimeError("no docker CLI on PATH; install Debian's docker.io")
    return found


def answers(host: str) -> bool:
    """Whether a Docker daemon answers a ping at `host` (e.g. unix:///path/docker.sock)."""
    try:
        client = docker_module().DockerClient(base_url=host, timeout=5)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def ensure_packages() -> None:
    """Debian's docker.io (daemon, runc, containerd) and debootstrap, installed when missing."""
    if shutil.which("dockerd") and shutil.which("debootstrap") and shutil.which("docker"):
        return
    if os.geteuid() != 0:
        raise RuntimeError("dockerd is missing and this is not root: apt-get install docker.io")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", *DEBIAN_PACKAGES]
    if subprocess.run(install, env=env, capture_output=True).returncode == 0:
        return
    subprocess.run(["apt-get", "update"], env=env, capture_output=True)
    done = subprocess.run(install, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"apt-get install {' '.join(DEBIAN_PACKAGES)} failed:\n{done.stderr}")


@dataclass
class DockerEngine:
    """A daemon at `host`. `managed`: the cache's own daemon, shared by the test sessions of
    this machine and stopped by the last one to leave; `process` is set where this session
    started it."""

    host: str
    root: Path
    process: subprocess.Popen[bytes] | None = None
    managed: bool = False

    def client(self) -> Any:
        return docker_module().DockerClient(base_url=self.host, timeout=120)

    def env(self) -> dict[str, str]:
        """This environment with DOCKER_HOST pointing at the engine (for CLIs and workers)."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def cli(self, *args: str, timeout: float = 600, stdin: Any = None) -> str:
        done = subprocess.run(
            [docker_cli(), *args],
            env={**self.env(), "DOCKER_BUILDKIT": "0"},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=stdin,
        )
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def log_tail(self, n: int = 40) -> str:
        log = self.root / "dockerd.log"
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM by PID (dockerd stops its containerd), SIGKILL after `timeout`."""
        if self.process is not None:
            if self.process.poll() is not None:
                return
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
            return
        pid = _read_pid(self.root / "dockerd.pid")
        if pid is None or not _alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    def release(self) -> None:
        """Leave the engine; the last session using the cache's daemon stops it by PID."""
        if not self.managed:
            return
        with _engine_lock(self.root):
            users = self.root / "users"
            (users / str(os.getpid())).unlink(missing_ok=True)
            for entry in users.iterdir():
                if entry.name.isdigit() and _alive(int(entry.name)):
                    return  # another session still uses it and will stop it
                entry.unlink(missing_ok=True)
            self.stop()


@contextlib.contextmanager
def _engine_lock(root: Path) -> Iterator[None]:
    """Serialises start/reuse and release of a cache's daemon between sessions."""
    with open(root / "engine.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped) no longer serves anything
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def start_engine(root: Path | None = None) -> DockerEngine:
    """Use `$DOCKER_HOST` when it answers; else the cache's daemon, started here if needed.

    Callers end with `release()`: it stops the cache's daemon once no session uses it.
    """
    external = os.environ.get("DOCKER_HOST")
    if external and answers(external):
        return DockerEngine(host=external, root=root or cache_dir())
    root = root or cache_dir()
    with _engine_lock(root):
        users = root / "users"
        users.mkdir(exist_ok=True)
        (users / str(os.getpid())).touch()
        return _start_daemon(root)


def _start_daemon(root: Path) -> DockerEngine:
    sock = root / "docker.sock"
    host = f"unix://{sock}"
    pid_file = root / "dockerd.pid"
    if answers(host):  # another session on this machine started it
        return DockerEngine(host=host, root=root, managed=True)
    ensure_packages()
    pid = _read_pid(pid_file)
    if pid_file.exists() and (pid is None or not _alive(pid)):
        pid_file.unlink()
    # containerd's socket paths must stay short: the exec root lives under /tmp, one per cache.
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    exec_root = Path(tempfile.gettempdir()) / f"pec-dockerd-{tag}"
    exec_root.mkdir(parents=True, exist_ok=True)
    args = [
        "dockerd",
        "--host",
        host,
        "--data-root",
        str(root / "data"),
        "--exec-root",
        str(exec_root),
        "--pidfile",
        str(pid_file),
        # no docker0 bridge, NAT rules or ip_forward change on a shared machine: tests use
        # the host network (S3 server, Prefect API, builds) or none (a local store mount)
        "--bridge",
        "none",
        "--iptables=false",
        "--ip-forward=false",
    ]
    with open(root / "dockerd.log", "wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    engine = DockerEngine(host=host, root=root, process=process, managed=True)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dockerd exited with {process.returncode}:\n{engine.log_tail()}")
        if answers(host):
            return engine
        time.sleep(0.5)
    engine.stop()
    raise RuntimeError(f"dockerd did not answer in {READY_TIMEOUT_S} s:\n{engine.log_tail()}")


def has_image(engine: DockerEngine, tag: str) -> bool:
    client = engine.client()
    try:
        client.images.get(tag)
        return True
    except docker_module().errors.ImageNotFound:
        return False
    finally:
        client.close()


def ensure_base_image(engine: DockerEngine) -> str:
    """`local/debian-python:bookworm`: a minimal Debian with python3, made by debootstrap."""
    if has_image(engine, BASE_IMAGE):
        return BASE_IMAGE
    ensure_packages()
    with tempfile.TemporaryDirectory(prefix="pec-rootfs-", dir=engine.root) as tmp:
        rootfs = Path(tmp) / "rootfs"
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
            raise RuntimeError(f"debootstrap of the base image failed:\n{tail}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            engine.cli("import", "-", BASE_IMAGE, stdin=tar.stdout, timeout=600)
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait(timeout=60)
    return BASE_IMAGE


def local_torch_wheel() -> Path | None:
    for folder in WHEEL_DIRS:
        found = sorted(folder.glob("torch-2.13.0*.whl")) if folder.is_dir() else []
        if found:
            return found[0]
    return None


def image_inputs_hash(extra: str = "") -> str:
    """sha256 over the paths and bytes of IMAGE_INPUTS (caches and bytecode skipped)."""
    digest = hashlib.sha256(extra.encode())
    for name in IMAGE_INPUTS:
        path = REPO / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            rel = file.relative_to(REPO).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc"):
                continue
            digest.update(rel.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def stage_build_extras() -> str:
    """Copy the torch wheel and the host CA bundle into docker/local/; a label for the hash."""
    local = REPO / "docker" / "local"
    local.mkdir(exist_ok=True)
    label = []
    wheel = local_torch_wheel()
    if wheel is not None:
        target = local / wheel.name
        if not target.exists() or target.stat().st_size != wheel.stat().st_size:
            shutil.copyfile(wheel, target)
        label.append(wheel.name)
    if HOST_CA_BUNDLE.is_file():
        shutil.copyfile(HOST_CA_BUNDLE, local / "ca-certificates.crt")
        label.append("ca")
    return "+".join(label)


def ensure_cpu_image(engine: DockerEngine) -> str:
    """`pec-cpu:<hash>`, built from Dockerfile.cpu on the local base unless it exists."""
    extras = stage_build_extras()
    tag = f"{IMAGE_REPOSITORY}:{image_inputs_hash(extras)}"
    if has_image(engine, tag):
        return tag
    base = ensure_base_image(engine)
    started = time.monotonic()
    engine.cli(
        "build",
        "--network",
        "host",
        "-f",
        str(REPO / "docker" / "Dockerfile.cpu"),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        tag,
        str(REPO),
        timeout=BUILD_TIMEOUT_S,
    )
    logger.warning("built %s in %.0f s", tag, time.monotonic() - started)
    prune_old_images(engine, keep=KEEP_IMAGES)
    return tag


def ensure_isaaclab_image(engine: DockerEngine, cpu_image: str) -> str:
    """`pec-isaaclab:<hash>`: docker/Dockerfile.gpu built FROM pec's CPU image.

    The CPU image stands in for a CUDA PyTorch base (Python + torch, no NGC image). Behind a
    TLS-intercepting proxy, the host CA bundle goes into a one-layer base on top of it (PIP_CERT),
    so that Dockerfile.gpu's pip installs reach the package registry as Dockerfile.cpu's do.
    """
    inputs = [REPO / name for name in ISAACLAB_IMAGE_INPUTS]
    digest = hashlib.sha256(cpu_image.encode())
    for file in inputs:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    ca = HOST_CA_BUNDLE.read_bytes() if HOST_CA_BUNDLE.is_file() else b""
    digest.update(ca)
    tag = f"{ISAACLAB_REPOSITORY}:{digest.hexdigest()[:16]}"
    if has_image(engine, tag):
        return tag
    base = cpu_image
    if ca:
        base = f"{ISAACLAB_REPOSITORY}-base:{cpu_image.rsplit(':', 1)[-1]}"
        with tempfile.TemporaryDirectory(prefix="pec-ca-", dir=engine.root) as tmp:
            (Path(tmp) / "ca-certificates.crt").write_bytes(ca)
            (Path(tmp) / "Dockerfile").write_text(
                f"FROM {cpu_image}\n"
                "COPY ca-certificates.crt /etc/pec-ca/ca-certificates.crt\n"
                "ENV PIP_CERT=/etc/pec-ca/ca-certificates.crt\n"
            )
            engine.cli("build", "-t", base, tmp, timeout=300)
    started = time.monotonic()
    engine.cli(
        "build",
        "--network",
        "host",
        "-f",
        str(REPO / "docker" / "Dockerfile.gpu"),
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-t",
        tag,
        str(REPO),
        timeout=BUILD_TIMEOUT_S,
    )
    logger.warning("built %s in %.0f s", tag, time.monotonic() - started)
    for repository in (ISAACLAB_REPOSITORY, f"{ISAACLAB_REPOSITORY}-base"):
        prune_old_images(engine, keep=KEEP_IMAGES, repository=repository)
    return tag


def prune_old_images(engine: DockerEngine, keep: int, repository: str = IMAGE_REPOSITORY) -> None:
    """Drop all but the newest `keep` tags of `repository`, so the cache does not grow per commit.

    Layers shared with the newer images (the dependency venv) stay; an image that a
    container still uses is left alone.
    """
    client = engine.client()
    try:
        images = client.images.list(name=repository)
        images.sort(key=lambda image: str(image.attrs.get("Created", "")), reverse=True)
        for image in images[keep:]:
            for tag in image.tags:
                try:
                    client.images.remove(tag)
                except Exception as exc:
                    logger.warning("kept old image %s: %s", tag, exc)
    finally:
        client.close()


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[DockerEngine]:
    """A Docker engine for this session; DOCKER_HOST points at it meanwhile.

    The cache's daemon is stopped by PID at the end unless another session still uses it.
    """
    engine = start_engine()
    saved = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = engine.host
    try:
        yield engine
    finally:
        if saved is None:
            os.environ.pop("DOCKER_HOST", None)
        else:
            os.environ["DOCKER_HOST"] = saved
        engine.release()


@pytest.fixture(scope="session")
def pec_cpu_image(docker_engine: DockerEngine) -> str:
    """The tag of pec's CPU image (built once per content, cached in the engine)."""
    return ensure_cpu_image(docker_engine)


@pytest.fixture(scope="session")
def pec_isaaclab_image(docker_engine: DockerEngine, pec_cpu_image: str) -> str:
    """The tag of docker/Dockerfile.gpu built on pec's CPU image (cached like it)."""
    return ensure_isaaclab_image(docker_engine, pec_cpu_image)
