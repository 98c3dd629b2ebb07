"""Test doubles for the job layer: a backend that records what it was given and misbehaves
on request, and a fake docker-py client. Named *doubles* so nobody mistakes them for a
simulator.

Out-of-process jobs reach these through the registry's test hook: set
``PEC_TEST_BACKEND_MODULE=support.job_doubles`` (with tests/ on PYTHONPATH) and use a backend
name starting with ``test-``. Behaviour is chosen by the job's ``settings``:

- ``fail``: ``"before_checkpoint"`` or ``"after_checkpoint"`` raises a RuntimeError there;
  ``"sigkill_after_checkpoint"`` kills the process outright after the best checkpoint.
- ``hang``: ``"before_checkpoint"`` / ``"after_checkpoint"`` blocks (up to 120 s) there.
- ``ignore_sigterm``: true -> the process ignores SIGTERM (forces the executor's SIGKILL).
- ``spawn_child_pid_file``: path -> start a ``sleep`` grandchild, write its pid there.
- ``handshake_file``: path -> after the first progress report, wait until this file exists.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pec.backends.base import (
    CheckpointCallback,
    EvalRequest,
    ProbeRequest,
    ProgressCallback,
    TrainOutcome,
    TrainRequest,
)
from pec.backends.zero_cost import ZeroCostBackend
from pec.runs.store.npy import npy_bytes

HANG_LIMIT_S = 120.0


class RecordingBackend(ZeroCostBackend):
    """The zero-cost backend (pec.backends.zero_cost), recording its requests and misbehaving
    on request (see the module docstring)."""

    name = "test-recording"

    def __init__(self) -> None:
        super().__init__()
        self.train_requests: list[TrainRequest] = []
        self.resume_bytes: list[bytes | None] = []
        self.eval_requests: list[EvalRequest] = []
        self.eval_checkpoint_bytes: list[bytes] = []
        self.probe_requests: list[ProbeRequest] = []
        self.checkpoint_bytes: list[bytes] = []

    def train(
        self,
        request: TrainRequest,
        on_progress: ProgressCallback | None = None,
        on_checkpoint: CheckpointCallback | None = None,
    ) -> TrainOutcome:
        self.train_requests.append(request)
        resume = request.resume_checkpoint
        self.resume_bytes.append(resume.read_bytes() if resume is not None else None)
        settings = request.settings
        if settings.get("ignore_sigterm"):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pid_file = settings.get("spawn_child_pid_file")
        if isinstance(pid_file, str):
            child = subprocess.Popen(["sleep", "300"])
            Path(pid_file).write_text(str(child.pid))
        outcome = super().train(request, on_progress, on_checkpoint)
        if settings.get("report_threads"):
            import torch

            # What the job's process was given: the thread policy as the job sees it.
            extra = {
                "omp_num_threads": float(os.environ.get("OMP_NUM_THREADS", "0")),
                "openblas_num_threads": float(os.environ.get("OPENBLAS_NUM_THREADS", "0")),
                "torch_threads": float(torch.get_num_threads()),
            }
            return TrainOutcome(
                best_checkpoint=outcome.best_checkpoint,
                last_checkpoint=outcome.last_checkpoint,
                metrics={**outcome.metrics, **extra},
            )
        return outcome

    def on_iteration(self, request: TrainRequest, iteration: int) -> None:
        if iteration == 1 and isinstance(request.settings.get("handshake_file"), str):
            _wait_for_file(Path(str(request.settings["handshake_file"])))

    def at_moment(self, request: TrainRequest, moment: str) -> None:
        settings = request.settings
        if moment == "after_checkpoint":
            self.checkpoint_bytes.append((request.work_dir / "model_best.pt").read_bytes())
        if settings.get("fail") == moment:
            raise RuntimeError(f"double told to fail {moment}")
        if moment == "after_checkpoint" and settings.get("fail") == "sigkill_after_checkpoint":
            os.kill(os.getpid(), signal.SIGKILL)
        if settings.get("hang") == moment:
            threading.Event().wait(HANG_LIMIT_S)  # the executor's timeout must end this

    def evaluate(self, request: EvalRequest) -> list[int]:
        """Level = start_difficulty + design index (capped at 74): easy to check by hand."""
        self.eval_requests.append(request)
        self.eval_checkpoint_bytes.append(request.checkpoint.read_bytes())
        if request.settings.get("fail") == "evaluate":
            raise RuntimeError("double told to fail evaluate")
        return super().evaluate(request)

    def probe_levels(self, request: ProbeRequest) -> list[bool]:
        """Passes while the level is at most the design's threshold: 20 x GCR (0.8 -> 16)."""
        self.probe_requests.append(request)
        thresholds = np.floor(20 * np.asarray(request.gcr) + 1e-9)
        return [bool(level <= t) for level, t in zip(request.levels, thresholds, strict=True)]


def _wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + 30.0
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"handshake file {path} never appeared: output is not streamed")
        time.sleep(0.01)


def make_test_backend(name: str) -> ZeroCostBackend:
    """Registry hook for names starting with ``test-``."""
    if name == RecordingBackend.name:
        return RecordingBackend()
    if name == ZeroCostBackend.name:
        return ZeroCostBackend()
    raise ValueError(f"no test double called {name!r}")


# --- docker-py double ---------------------------------------------------------------------


class FakeContainer:
    """Follows a script: emits log chunks, optionally writes a result, then exits or hangs."""

    def __init__(
        self,
        kwargs: dict[str, Any],
        *,
        log_chunks: list[bytes],
        exit_code: int | None,
        result: dict[str, Any] | None,
        interrupt_on_reload: bool = False,
    ) -> None:
        self.kwargs = kwargs
        self.interrupt_on_reload = interrupt_on_reload
        self.id = "fake0123456789"
        self.short_id = "fake0123"
        self.status = "created"
        self.log_chunks = log_chunks
        self.exit_code = exit_code  # None: runs until stopped
        self.result = result
        self.stopped_with: int | None = None
        self.removed = False
        self.reloads = 0
        self._finished = threading.Event()
        self.status = "running"
        if exit_code is not None:
            self._finish(exit_code)

    def _job_dir(self) -> Path:
        for host, mount in self.kwargs["volumes"].items():
            if mount["bind"] == "/pec_job":
                return Path(host)
        raise AssertionError("job folder not mounted at /pec_job")

    def _finish(self, exit_code: int) -> None:
        if self.result is not None:
            (self._job_dir() / "result.json").write_text(json.dumps(self.result))
        self.exit_code = exit_code
        self.status = "exited"
        self._finished.set()

    def reload(self) -> None:
        self.reloads += 1
        if self.interrupt_on_reload:
            raise KeyboardInterrupt

    def logs(self, stream: bool, follow: bool) -> Iterator[bytes]:
        assert stream and follow
        yield from self.log_chunks
        self._finished.wait(HANG_LIMIT_S)

    def wait(self) -> dict[str, int]:
        self._finished.wait(HANG_LIMIT_S)
        assert self.exit_code is not None
        return {"StatusCode": self.exit_code}

    def stop(self, timeout: int) -> None:
        self.stopped_with = timeout
        if self.status == "running":
            self._finish(137)

    def remove(self, force: bool = False) -> None:
        assert force, "containers are removed with force=True"
        self.removed = True
        if not self._finished.is_set():
            self._finish(137)


class FakeContainers:
    def __init__(self, script: dict[str, Any]) -> None:
        self.script = script
        self.created: list[FakeContainer] = []

    def run(self, **kwargs: Any) -> FakeContainer:
        assert kwargs.get("detach") is True
        container = FakeContainer(kwargs, **self.script)
        self.created.append(container)
        return container


class FakeDockerClient:
    """Stands in for `docker.from_env()`; `script` configures every container it runs."""

    def __init__(
        self,
        *,
        log_chunks: list[bytes] | None = None,
        exit_code: int | None = 0,
        result: dict[str, Any] | None = None,
        interrupt_on_reload: bool = False,
    ) -> None:
        self.containers = FakeContainers(
            {
                "log_chunks": log_chunks or [],
                "exit_code": exit_code,
                "result": result,
                "interrupt_on_reload": interrupt_on_reload,
            }
        )


def write_samples(store: Any, keys: tuple[str, str], num_envs: int, seed: int = 0) -> None:
    """Per-environment design samples as the flow writes them (float32 .npy)."""
    rng = np.random.default_rng(seed)
    gcr = rng.uniform(0.75, 0.89, num_envs).astype(np.float32)
    spcf = rng.uniform(0.001, 0.010, num_envs).astype(np.float32)
    for key, values in zip(keys, (gcr, spcf), strict=True):
        store.write_bytes(key, npy_bytes(values))


def train_spec_dict(store_root: Path, **overrides: Any) -> dict[str, Any]:
    """A valid training spec for the recording double, as the flow would build it."""
    from pec.runs import layout

    gcr_key, spcf_key = layout.samples_keys("demo", 1, 2)
    spec: dict[str, Any] = {
        "kind": "train",
        "backend": RecordingBackend.name,
        "store": {"location": str(store_root)},
        "run_name": "demo",
        "expert_id": 1,
        "iteration": 2,
        "samples_gcr_key": gcr_key,
        "samples_spcf_key": spcf_key,
        "start_level": 3,
        "max_iterations": 3,
        "num_envs": 4,
        "seed": 7,
        "device": "cpu",
        "resume_checkpoint_uri": None,
        "settings": {},
        "timeout_s": 60.0,
    }
    spec.update(overrides)
    return spec


def eval_spec_dict(store_root: Path, checkpoint_uri: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "kind": "eval",
        "backend": RecordingBackend.name,
        "store": {"location": str(store_root)},
        "run_name": "demo",
        "expert_id": 1,
        "iteration": 2,
        "checkpoint_uri": checkpoint_uri,
        "designs": [[0.8, 0.002], [0.85, 0.005], [0.88, 0.009]],
        "num_episodes": 2,
        "start_difficulty": 10,
        "seed": 3,
        "device": "cpu",
        "settings": {},
        "timeout_s": 60.0,
        "result_key": None,
    }
    spec.update(overrides)
    return spec
