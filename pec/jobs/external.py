"""What an out-of-process job left behind, turned into a result or a JobError.

Shared by the subprocess and the Docker executors: both run `python -m pec.jobs` elsewhere
and read back its result file, its exit code and the tail of its output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from pec.errors import IncompleteTrainingError, JobError
from pec.jobs.spec import (
    EXIT_BAD_SPEC,
    EXIT_INCOMPLETE,
    EXIT_JOB_FAILED,
    EvalJobResult,
    EvalJobSpec,
    TrainJobSpec,
    parse_job_result,
)
from pec.runs import layout
from pec.runs.job_records import TrainJobResult

logger = logging.getLogger(__name__)

LogSink = Callable[[str], None]
TAIL_LINES = 40  # output lines quoted in a JobError
PROGRESS_RE = re.compile(r"progress (\d+)/(\d+)")  # the jobs' progress lines


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
    stopped it (timeout). Exit codes 1 and 2 are the job's own verdict and final; exit code
    4 is the job saying its training stopped before its PPO iterations were done. A result
    file written before the end wins. A training job that was killed (signal, OOM, timeout,
    crash) after its best checkpoint reached the store raises IncompleteTrainingError, so
    the driver retries it (the retry continues from model_last.pt) and applies the crash
    rule only once retries are exhausted (pec.iteration.driver.apply_crash_rule).
    """
    what = _describe(spec)
    lines = last_output(tail)
    if stopped_reason is None and exit_code == EXIT_INCOMPLETE and isinstance(spec, TrainJobSpec):
        # The job's own account: it stopped before its PPO iterations were done.
        raise IncompleteTrainingError(
            f"{what} stopped early (exit code {exit_code}){lines}",
            completed=progress_from_output(spec, tail),
            total=spec.max_iterations,
        )
    if stopped_reason is None and exit_code in (EXIT_JOB_FAILED, EXIT_BAD_SPEC):
        # The job judged its own outcome (crash before its best checkpoint, bad input):
        # a checkpoint in the store now would be a stale one from an earlier attempt.
        raise JobError(f"{what} failed (exit code {exit_code}){lines}")
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
    if isinstance(spec, TrainJobSpec) and _best_checkpoint_exists(spec):
        # Stopped before it finished (killed, OOM, timeout, crash): fail, so a retry
        # continues from model_last.pt. The crash rule (keep model_best.pt) is applied by
        # the driver once retries are exhausted (pec.iteration.driver.apply_crash_rule).
        done = progress_from_output(spec, tail)
        shown = "?" if done is None else str(done)
        raise IncompleteTrainingError(
            f"{reason} after {shown} of {spec.max_iterations} PPO iterations; a retry "
            f"continues from {layout.LAST_CHECKPOINT_FILE} where one was saved{lines}",
            completed=done,
            total=spec.max_iterations,
        )
    raise JobError(f"{reason} and left no usable result{lines}")


def _best_checkpoint_exists(spec: TrainJobSpec) -> bool:
    best_key = spec.checkpoint_dir + layout.BEST_CHECKPOINT_FILE
    return spec.store.open().exists(best_key)


def progress_from_output(spec: TrainJobSpec, tail: Iterable[str]) -> int | None:
    """This job's PPO iterations done, from its last `progress i/N` line (a lower bound)."""
    last: tuple[int, int] | None = None
    for line in tail:
        match = PROGRESS_RE.search(line)
        if match:
            last = int(match.group(1)), int(match.group(2))
    if last is None:
        return None
    done, total = last
    return max(0, min(spec.max_iterations, spec.max_iterations - (total - done)))


def last_output(tail: Iterable[str]) -> str:
    """`; last output:` and the job's last lines, or a plain note when it printed nothing."""
    lines = [line for line in tail if line.strip()]
    if not lines:
        return "; the job printed nothing (killed before its first line, or its output was lost)"
    return "; last output:\n" + "\n".join(lines)


def _describe(spec: TrainJobSpec | EvalJobSpec) -> str:
    kind = "training" if isinstance(spec, TrainJobSpec) else "evaluation"
    return (
        f"{kind} job for expert {spec.expert_id} iteration {spec.iteration} "
        f"of run {spec.run_name!r}"
    )
