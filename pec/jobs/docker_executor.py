"""Runs `python -m pec.jobs` inside a container (the Isaac Lab GPU image, or the CPU image).

The spec travels as a file in a mounted job folder and the result comes back the same way,
so nothing but the store and that folder is shared with the container. A local store is
mounted at its own path (the spec names it). Credentials are forwarded by environment
variable *name* from the host, and never logged. The container is always removed, also
when it could not start (a GPU request on a host without the NVIDIA runtime fails only at
start, after the container exists); on cancel or timeout it is stopped first (SIGTERM, so
the job's crash rule still reports an uploaded checkpoint).
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pec.errors import ConfigError, JobError, one_line
from pec.jobs.external import TAIL_LINES, LogSink, finish_external_job
from pec.jobs.spec import EvalJobResult, EvalJobSpec, TrainJobSpec
from pec.jobs.threads import thread_env
from pec.runs.job_records import TrainJobResult

logger = logging.getLogger(__name__)

CONTAINER_JOB_DIR = "/pec_job"
CREDENTIAL_ENV_NAMES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
)


def _docker_from_env() -> Any:
    # Lazy, and through importlib: the repository's own docker/ folder would otherwise
    # shadow docker-py for the type checker.
    return importlib.import_module("docker").from_env()


def container_create_kwargs(
    *,
    image: str,
    host_job_dir: Path,
    gpus: int = 0,
    volumes: Mapping[str, str | Mapping[str, str]] | None = None,
    environment: Mapping[str, str] | None = None,
    pass_env: Sequence[str] = CREDENTIAL_ENV_NAMES,
    host_env: Mapping[str, str] | None = None,
    network_mode: str | None = None,
    shm_size: str | None = None,
    python: str = "python",
    name: str | None = None,
    labels: Mapping[str, str] | None = None,
    user: str | None = None,
) -> dict[str, Any]:
    """Keyword arguments for docker-py's `containers.run(**kwargs)`.

    `volumes` maps host paths to container paths (read-write) or to docker-py's
    ``{"bind": ..., "mode": ...}``; a local store must be mounted at the same path it has
    in the spec. `pass_env` names host variables copied in when set on the host. `user`
    ("uid:gid") overrides the image's user, e.g. to own files in a mounted local store.
    """
    if not image:
        raise ConfigError("docker image is empty; set the executor's image to a pec image tag")
    if gpus < -1:
        raise ConfigError(f"gpus is {gpus}; use 0 (CPU), a positive count, or -1 for all GPUs")
    mounts: dict[str, dict[str, str]] = {
        str(host_job_dir): {"bind": CONTAINER_JOB_DIR, "mode": "rw"}
    }
    for host_path, target in (volumes or {}).items():
        if isinstance(target, str):
            mounts[str(host_path)] = {"bind": target, "mode": "rw"}
        else:
            mounts[str(host_path)] = {"bind": target["bind"], "mode": target.get("mode", "rw")}
    host = os.environ if host_env is None else host_env
    env: dict[str, str] = {"PYTHONUNBUFFERED": "1"}
    env.update({var: host[var] for var in pass_env if var in host})
    env.update(environment or {})
    kwargs: dict[str, Any] = {
        "image": image,
        "command": [
            python,
            "-m",
            "pec.jobs",
            f"{CONTAINER_JOB_DIR}/spec.json",
            "--result",
            f"{CONTAINER_JOB_DIR}/result.json",
        ],
        "detach": True,
        "volumes": mounts,
        "environment": env,
        "labels": {"pec.job": "1", **(labels or {})},
    }
    if name is not None:
        kwargs["name"] = name
    if network_mode is not None:
        kwargs["network_mode"] = network_mode
    if shm_size is not None:
        kwargs["shm_size"] = shm_size
    if user is not None:
        kwargs["user"] = user
    if gpus != 0:
        device_request = importlib.import_module("docker.types").DeviceRequest
        kwargs["device_requests"] = [device_request(count=gpus, capabilities=[["gpu"]])]
    return kwargs


def redacted(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The kwargs safe to log: environment variable names only, never their values."""
    shown = dict(kwargs)
    shown["environment"] = sorted(kwargs.get("environment", {}))
    return shown


class DockerExecutor:
    """One container per job; see the module docstring."""

    def __init__(
        self,
        image: str,
        gpus: int = 0,
        volumes: Mapping[str, str | Mapping[str, str]] | None = None,
        environment: Mapping[str, str] | None = None,
        network_mode: str | None = None,
        shm_size: str | None = None,
        docker_client_factory: Callable[[], Any] = _docker_from_env,
        pass_env: Sequence[str] = CREDENTIAL_ENV_NAMES,
        timeout_s: float | None = None,
        stop_timeout_s: int = 30,
        poll_interval_s: float = 1.0,
        python: str = "python",
        user: str | None = None,
        mount_local_store: bool = True,
    ) -> None:
        self.image = image
        self.gpus = gpus
        self.volumes = dict(volumes or {})
        self.environment = dict(environment or {})
        self.network_mode = network_mode
        self.shm_size = shm_size
        self.docker_client_factory = docker_client_factory
        self.pass_env = tuple(pass_env)
        self.timeout_s = timeout_s  # None: use the spec's timeout_s
        self.stop_timeout_s = stop_timeout_s  # docker's grace between SIGTERM and SIGKILL
        self.poll_interval_s = poll_interval_s
        self.python = python
        self.user = user
        self.mount_local_store = mount_local_store  # a local store at its own path

    def _volumes(self, spec: TrainJobSpec | EvalJobSpec) -> dict[str, str | Mapping[str, str]]:
        volumes: dict[str, str | Mapping[str, str]] = dict(self.volumes)
        location = spec.store.location
        if self.mount_local_store and "://" not in location:
            root = str(Path(location).resolve())
            if root not in volumes:
                volumes[root] = root
        return volumes

    def execute(
        self,
        spec: TrainJobSpec | EvalJobSpec,
        log: LogSink | None = None,
        cancel_event: threading.Event | None = None,
    ) -> TrainJobResult | EvalJobResult:
        timeout = self.timeout_s if self.timeout_s is not None else spec.timeout_s
        cancel = cancel_event or threading.Event()
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        client = self.docker_client_factory()
        with tempfile.TemporaryDirectory(prefix="pec-docker-job-") as tmp:
            job_dir = Path(tmp)
            job_dir.chmod(0o777)  # the image may run as another user and must write the result
            (job_dir / "spec.json").write_text(spec.model_dump_json())
            kwargs = container_create_kwargs(
                image=self.image,
                host_job_dir=job_dir,
                gpus=self.gpus,
                volumes=self._volumes(spec),
                environment={**thread_env(spec.threads), **self.environment},
                pass_env=self.pass_env,
                network_mode=self.network_mode,
                shm_size=self.shm_size,
                python=self.python,
                name=_container_name(spec),
                labels={"pec.runs.run": spec.run_name, "pec.expert": str(spec.expert_id)},
                user=self.user,
            )
            logger.info("starting container: %s", redacted(kwargs))
            container = self._start(client, kwargs, spec)
            reader = threading.Thread(target=_pump_logs, args=(container, tail, log), daemon=True)
            reader.start()
            stopped_reason: str | None = None
            exit_code: int | None = None
            try:
                stopped_reason = self._wait(container, timeout, cancel)
                if stopped_reason is None:
                    exit_code = int(container.wait()["StatusCode"])
                else:
                    self._stop(container)
                if cancel.is_set():
                    raise JobError(
                        f"job for expert {spec.expert_id} iteration {spec.iteration} was "
                        "cancelled by the caller; start it again to retry"
                    )
            except KeyboardInterrupt:
                self._stop(container)
                raise
            finally:
                reader.join(timeout=5.0)
                self._remove(container)
            return finish_external_job(
                spec,
                result_path=job_dir / "result.json",
                exit_code=exit_code,
                stopped_reason=stopped_reason,
                tail=tail,
            )

    def _start(self, client: Any, kwargs: dict[str, Any], spec: TrainJobSpec | EvalJobSpec) -> Any:
        """docker-py creates, then starts: a failed start leaves a container to remove."""
        try:
            return client.containers.run(**kwargs)
        except Exception as exc:
            try:
                client.containers.get(kwargs["name"]).remove(force=True)
            except Exception as cleanup_exc:  # never created, or already gone
                logger.debug("no container %s to clean up: %s", kwargs["name"], cleanup_exc)
            hint = (
                "install the NVIDIA container toolkit on this host or set gpus to 0"
                if "device_requests" in kwargs
                else "check the image tag, the mounts and the Docker daemon"
            )
            raise JobError(
                f"container for expert {spec.expert_id} iteration {spec.iteration} "
                f"({self.image}) could not start: {one_line(exc)}; {hint}"
            ) from exc

    def _wait(self, container: Any, timeout: float, cancel: threading.Event) -> str | None:
        """None once the container exits by itself, else why we must stop it."""
        deadline = time.monotonic() + timeout
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                return None
            if cancel.is_set():
                return "cancelled by the caller"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"timeout after {timeout:g} s"
            cancel.wait(min(self.poll_interval_s, remaining))

    def _stop(self, container: Any) -> None:
        try:
            container.stop(timeout=self.stop_timeout_s)
        except Exception as exc:  # already gone, daemon hiccup: removal below still forces it
            logger.warning("could not stop container %s: %s", _container_id(container), exc)

    def _remove(self, container: Any) -> None:
        try:
            container.remove(force=True)
        except Exception as exc:
            logger.warning("could not remove container %s: %s", _container_id(container), exc)


def _container_name(spec: TrainJobSpec | EvalJobSpec) -> str:
    """Unique and readable in `docker ps`: pec-<run>-<kind>-<k>-it<N>-<random>."""
    run = re.sub(r"[^a-zA-Z0-9_.-]+", "-", spec.run_name)[:60]
    return f"pec-{run}-{spec.kind}-{spec.expert_id}-it{spec.iteration}-{uuid.uuid4().hex[:8]}"


def _container_id(container: Any) -> str:
    return str(getattr(container, "short_id", None) or getattr(container, "id", "?"))


def _pump_logs(container: Any, tail: deque[str], log: LogSink | None) -> None:
    """docker-py yields byte chunks that need not end at line breaks: re-split them."""
    pending = ""
    try:
        for chunk in container.logs(stream=True, follow=True):
            text = chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else str(chunk)
            pending += text
            *lines, pending = pending.split("\n")
            for line in lines:
                _emit(line, tail, log)
    except Exception as exc:
        logger.warning("log stream of container %s ended: %s", _container_id(container), exc)
    if pending:
        _emit(pending, tail, log)


def _emit(line: str, tail: deque[str], log: LogSink | None) -> None:
    line = line.rstrip("\r")
    tail.append(line)
    if log is not None:
        try:
            log(line)
        except Exception:
            logger.exception("log sink failed")
