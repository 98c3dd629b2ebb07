"""Ways to run a job: here, in a child process, or (see `docker_executor`) in a container.

All executors share one call, `execute(spec, log) -> result`, so the flow can swap them.
The out-of-process ones apply the crash rule a second time from the outside: a job that
was killed or died after uploading its best checkpoint is still reported as trained.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from pec import layout
from pec.errors import ConfigError, JobError
from pec.jobs.run import prefix_uri, run_job
from pec.jobs.spec import (
    EXIT_BAD_SPEC,
    EXIT_JOB_FAILED,
    EvalJobResult,
    EvalJobSpec,
    TrainJobResult,
    TrainJobSpec,
    parse_job_result,
)

logger = logging.getLogger(__name__)

LogSink = Callable[[str], None]
TAIL_LINES = 40  # output lines quoted in a JobError


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


def recover_train_result(spec: TrainJobSpec, reason: str) -> TrainJobResult | None:
    """The result a dead training job would have reported, if its best checkpoint exists."""
    store = spec.store.open()
    best_key = layout.best_checkpoint_key(spec.run_name, spec.expert_id, spec.iteration)
    if not store.exists(best_key):
        return None
    last_key = layout.last_checkpoint_key(spec.run_name, spec.expert_id, spec.iteration)
    log_prefix = layout.train_log_prefix(spec.run_name, spec.expert_id, spec.iteration)
    warning = f"{reason}; reporting the {layout.BEST_CHECKPOINT_FILE} it had already uploaded"
    logger.warning("expert %d iteration %d: %s", spec.expert_id, spec.iteration, warning)
    return TrainJobResult(
        checkpoint_uri=store.uri(best_key),
        last_checkpoint_uri=store.uri(last_key) if store.exists(last_key) else None,
        metrics={},
        log_uri=prefix_uri(store, log_prefix),
        warning=warning,
    )


def finish_external_job(
    spec: TrainJobSpec | EvalJobSpec,
    *,
    result_path: Path,
    exit_code: int | None,
    stopped_reason: str | None,
    tail: Iterable[str],
) -> TrainJobResult | EvalJobResult:
    """Turn what an out-of-process job left behind into a result or a JobError.

    `exit_code` None means the job never exited by itself; `stopped_reason` says why we
    stopped it (timeout). Exit codes 1 and 2 are the job's own verdict and final. Otherwise a
    result file written before the end wins; failing that, a train job that was killed
    (signal, OOM, timeout) falls back to the best checkpoint in the store. That object may
    predate this attempt if the job died before writing its own: it is still a checkpoint
    of this (run, expert, iteration), and the warning says it was recovered.
    """
    what = _describe(spec)
    lines = "\n".join(tail)
    if stopped_reason is None and exit_code in (EXIT_JOB_FAILED, EXIT_BAD_SPEC):
        # The job judged its own outcome (crash before its best checkpoint, bad input):
        # a checkpoint in the store now would be a stale one from an earlier attempt.
        raise JobError(f"{what} failed (exit code {exit_code}); last output:\n{lines}")
    result: TrainJobResult | EvalJobResult | None = None
    if result_path.is_file() and result_path.stat().st_size > 0:
        result = parse_job_result(spec, result_path.read_bytes())
    if result is not None and exit_code == 0 and stopped_reason is None:
        return result
    if stopped_reason is not None:
        reason = f"{what} was stopped ({stopped_reason})"
    else:
        reason = f"{what} exited with code {exit_code}"
    if isinstance(result, TrainJobResult):
        note = f"{reason}; {result.warning}" if result.warning else reason
        return result.model_copy(update={"warning": note})
    if isinstance(spec, TrainJobSpec):
        recovered = recover_train_result(spec, reason)
        if recovered is not None:
            return recovered
    raise JobError(f"{reason} and left no usable result; last output:\n{lines}")


def _describe(spec: TrainJobSpec | EvalJobSpec) -> str:
    kind = "training" if isinstance(spec, TrainJobSpec) else "evaluation"
    return (
        f"{kind} job for expert {spec.expert_id} iteration {spec.iteration} "
        f"of run {spec.run_name!r}"
    )


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
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # also reaps grandchildren left behind
    except ProcessLookupError:
        pass
    process.wait()


def make_executor(kind: str, **options: Any) -> Executor:
    """Build an executor by name, e.g. from the run configuration."""
    if kind == "inprocess":
        return InProcessExecutor(**options)
    if kind == "subprocess":
        return SubprocessExecutor(**options)
    if kind == "docker":
        from pec.jobs.docker_executor import DockerExecutor

        return DockerExecutor(**options)
    raise ConfigError(f"executor {kind!r} is unknown; choose inprocess, subprocess or docker")
