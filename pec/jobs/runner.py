"""Running a batch of jobs: the `JobRunner` contract and the local runner over an executor.

An executor runs one job; a driver (one PEC iteration, a final evaluation, the baseline)
hands a whole batch to a runner and gets one `JobOutcome` per spec back, in order: a
result, or the error that stopped the job, and whether an earlier identical job's result was
reused. `LocalJobRunner` runs the batch with a pec executor, at most `max_parallel` jobs at a
time; the Prefect runner (`flows.tasks.PrefectJobRunner`) maps it over cached task runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from pec.errors import MESSAGE_LIMIT, IncompleteTrainingError, JobError, PECError, one_line
from pec.jobs.executors import Executor
from pec.jobs.external import LogSink
from pec.jobs.spec import EvalJobResult, EvalJobSpec, TrainJobSpec
from pec.runs.job_records import TrainJobResult

logger = logging.getLogger(__name__)

JobSpecs = Sequence[TrainJobSpec | EvalJobSpec]
# The result an earlier identical job recorded in the store, or None (skip-if-done).
FinishedLookup = Callable[[TrainJobSpec | EvalJobSpec], TrainJobResult | EvalJobResult | None]
# Told about each outcome as soon as it is known (e.g. to record a result before the next job).
OnOutcome = Callable[["JobOutcome"], None]
# Where a job's output lines go (None: nowhere).
LogFor = Callable[[TrainJobSpec | EvalJobSpec], LogSink | None]


@dataclass(frozen=True)
class JobOutcome:
    """What became of one job: its result, or the error that stopped it; `reused` if not run."""

    spec: TrainJobSpec | EvalJobSpec
    result: TrainJobResult | EvalJobResult | None
    error: str | None = None
    reused: bool = False

    def __post_init__(self) -> None:
        # An error travels into the CLI, the state's failure records and logs: one line,
        # whatever library message it quotes.
        if self.error is not None:
            object.__setattr__(self, "error", one_line(self.error, MESSAGE_LIMIT))

    @property
    def expert_id(self) -> int:
        return self.spec.expert_id

    @property
    def failed(self) -> bool:
        return self.result is None

    def train_result(self) -> TrainJobResult | None:
        if self.result is not None and not isinstance(self.result, TrainJobResult):
            raise JobError(f"job for expert {self.expert_id} returned an evaluation result")
        return self.result

    def eval_result(self) -> EvalJobResult | None:
        if self.result is not None and not isinstance(self.result, EvalJobResult):
            raise JobError(f"job for expert {self.expert_id} returned a training result")
        return self.result


class JobRunner(Protocol):
    """Runs a batch of jobs; never raises for one job's failure (that is an outcome)."""

    # Said to the user when a failed job stops the iteration: how to try again.
    retry_hint: str

    def run_jobs(
        self,
        specs: JobSpecs,
        finished: FinishedLookup | None = None,
        on_outcome: OnOutcome | None = None,
    ) -> list[JobOutcome]:
        """One outcome per spec, in order; `on_outcome` is called once per outcome.

        `finished(spec)` is the store's record of an earlier identical job; a runner with a
        cache of its own (Prefect's task cache, kept in the same store) may consult that
        instead, so that a retry shows which jobs it skipped.
        """
        ...


def no_log(spec: TrainJobSpec | EvalJobSpec) -> LogSink | None:
    return None


class LocalJobRunner:
    """Runs jobs with one pec executor in this process, at most `max_parallel` at a time.

    Parallelism is for executors that run jobs elsewhere (subprocess, Docker): jobs that run
    in this interpreter share its random number generators, so `for_config`-style callers
    give an in-process executor `max_parallel=1`. Outcomes come back in the specs' order.
    """

    retry_hint = "run again"

    def __init__(
        self,
        executor: Executor,
        max_parallel: int = 1,
        log_for: LogFor = no_log,
        retries: int = 0,
    ) -> None:
        if max_parallel < 1:
            raise ValueError(f"max_parallel={max_parallel}: need at least one job at a time")
        self.executor = executor
        self.max_parallel = max_parallel
        self.log_for = log_for
        # A training that stopped before its PPO iterations were done is run again (at
        # once) up to this many times; each retry continues from its predecessor's
        # model_last.pt. Other failures are the job's verdict and are not retried.
        self.retries = retries

    def run_jobs(
        self,
        specs: JobSpecs,
        finished: FinishedLookup | None = None,
        on_outcome: OnOutcome | None = None,
    ) -> list[JobOutcome]:
        def one(spec: TrainJobSpec | EvalJobSpec) -> JobOutcome:
            outcome = self._run_one(spec, finished)
            if on_outcome is not None:
                on_outcome(outcome)
            return outcome

        if self.max_parallel == 1 or len(specs) <= 1:
            return [one(spec) for spec in specs]
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            return list(pool.map(one, specs))

    def _run_one(
        self, spec: TrainJobSpec | EvalJobSpec, finished: FinishedLookup | None
    ) -> JobOutcome:
        done = finished(spec) if finished is not None else None
        if done is not None:
            return JobOutcome(spec, done, reused=True)
        for attempt in range(self.retries + 1):
            try:
                result = self.executor.execute(spec, log=self.log_for(spec))
            except IncompleteTrainingError as exc:
                if attempt == self.retries:
                    return JobOutcome(spec, None, str(exc))
                logger.warning(
                    "expert %d: %s; retry %d of %d",
                    spec.expert_id,
                    one_line(exc, MESSAGE_LIMIT),
                    attempt + 1,
                    self.retries,
                )
            except PECError as exc:
                return JobOutcome(spec, None, str(exc))
            else:
                return JobOutcome(spec, result)
        raise AssertionError("unreachable: the last attempt returns")
