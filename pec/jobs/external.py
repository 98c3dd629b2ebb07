"""What an out-of-process job left behind, turned into a result or a JobError (crash rule).

Shared by the subprocess and the Docker executors: both run `python -m pec.jobs` elsewhere
and read back its result file, its exit code and the tail of its output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from pec import layout
from pec.errors import JobError
from pec.jobs.run import prefix_uri
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
