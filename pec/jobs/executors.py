"""Ways to run one job: here, in a child process, or (see `docker_executor`) in a container.

All executors share one call, `execute(spec, log) -> result`, so the flow can swap them.
The out-of-process ones apply the crash rule a second time from the outside: a job that
was killed or died after uploading its best checkpoint is still reported as trained.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

from pec.errors import ConfigError
from pec.jobs.docker_executor import DockerExecutor
from pec.jobs.external import TAIL_LINES, LogSink, finish_external_job
from pec.jobs.run import run_job
from pec.jobs.spec import EvalJobResult, EvalJobSpec, TrainJobSpec
from pec.jobs.threads import thread_env
from pec.runs.job_records import TrainJobResult

logger = logging.getLogger(__name__)


def worth_reporting(iteration: int, max_iterations: int) -> bool:
    """About 20 progress lines per job: enough for a progress bar, not a flood of logs."""
    step = max(1, max_iterations // 20)
    return iteration <= 1 or iteration >= max_iterations or iteration % step == 0


class Executor(Protocol):
    def execute(
        self, spec: TrainJobSpec | EvalJobSpec, log: LogSink | None = None
    ) -> TrainJobResult | EvalJobResult: ...


class InProcessExecutor:
    """Runs the job in this interpreter: no isolation, no timeout; for tests and laptops."""

    def execute(
        self, spec: TrainJobSpec | EvalJobSpec, log: LogSink | None = None
    ) -> TrainJobResult | EvalJobResult:
        def progress(iteration: int, max_iterations: int, metrics: dict[str, float]) -> None:
            if log is not None and worth_reporting(iteration, max_iterations):
                shown = " ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()))
                log(f"progress {iteration}/{max_iterations} {shown}")

        return run_job(spec, on_progress=progress)


class SubprocessExecutor:
    """Runs `python -m pec.jobs` in its own process group, so a timeout kills every child."""

    def __init__(
        self,
        timeout_s: float | None = None,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        grace_s: float = 10.0,
    ) -> None:
        self.timeout_s = timeout_s  # None: use the spec's timeout_s
        self.python = python
        self.env = env  # added to (and overriding) this process's environment
        self.grace_s = grace_s  # between SIGTERM and SIGKILL

    def execute(
        self, spec: TrainJobSpec | EvalJobSpec, log: LogSink | None = None
    ) -> TrainJobResult | EvalJobResult:
        timeout = self.timeout_s if self.timeout_s is not None else spec.timeout_s
        env = dict(os.environ)
        env.update(thread_env(spec.threads))  # the job's thread policy (pec.jobs.threads)
        env.update(self.env or {})
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        with tempfile.TemporaryDirectory(prefix="pec-job-") as tmp:
            spec_path = Path(tmp) / "spec.json"
            result_path = Path(tmp) / "result.json"
            spec_path.write_text(spec.model_dump_json())
            command = [self.python, "-m", "pec.jobs", str(spec_path), "--result", str(result_path)]
            process = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                text=True,
                bufsize=1,
                start_new_session=True,
            )
            reader = threading.Thread(
                target=_pump_lines, args=(process.stdout, tail, log), daemon=True
            )
            reader.start()
            stopped_reason: str | None = None
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stopped_reason = f"timeout after {timeout:g} s"
                _stop_process_group(process, self.grace_s)
            except BaseException:
                _stop_process_group(process, self.grace_s)
                raise
            finally:
                reader.join(timeout=5.0)
            exit_code = None if stopped_reason is not None else process.returncode
            return finish_external_job(
                spec,
                result_path=result_path,
                exit_code=exit_code,
                stopped_reason=stopped_reason,
                tail=tail,
            )


def _pump_lines(stream: Any, tail: collections.deque[str], log: LogSink | None) -> None:
    """Forward each output line as it arrives; the tail is kept for error messages."""
    for raw in stream:
        line = raw.rstrip("\n")
        tail.append(line)
        if log is not None:
            try:
                log(line)
            except Exception:  # a broken sink must not stall the child on a full pipe
                logger.exception("log sink failed")
    stream.close()


def _stop_process_group(process: subprocess.Popen[str], grace_s: float) -> None:
    """SIGTERM the whole group (the job turns it into an exception), then SIGKILL."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # also reaps grandchildren left behind
    process.wait()


def make_executor(kind: str, **options: Any) -> Executor:
    """Build an executor by name, e.g. from the run configuration."""
    if kind == "inprocess":
        return InProcessExecutor(**options)
    if kind == "subprocess":
        return SubprocessExecutor(**options)
    if kind == "docker":
        return DockerExecutor(**options)
    raise ConfigError(f"executor {kind!r} is unknown; choose inprocess, subprocess or docker")
