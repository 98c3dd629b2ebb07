"""One error family for pec, so the CLI can turn any of them into a one-line message.

Every message names the offending field or object and says how to fix it.
"""

from __future__ import annotations

import re

QUOTE_LIMIT = 240  # characters of a library's message quoted in one of ours
MESSAGE_LIMIT = 1000  # characters of one of our messages shown on one line (CLI, job results)


def one_line(text: object, limit: int = QUOTE_LIMIT) -> str:
    """`text` on one line: every run of whitespace (newlines too) becomes one space, and
    more than `limit` characters are cut to `limit` ending in "...".

    How pec quotes a library's message (torch's unpickling errors run over several lines)
    in its own errors, job results, logs and the CLI.
    """
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: max(limit - 3, 0)] + "..."


def quoted(exc: BaseException, limit: int = QUOTE_LIMIT) -> str:
    """An exception as `Type: message`, on one line and capped (see `one_line`)."""
    return one_line(f"{type(exc).__name__}: {exc}", limit)


class PECError(Exception):
    """Base of every error pec raises on purpose."""


class ConfigError(PECError):
    """The run configuration (YAML, CLI overrides, flow parameters) is invalid."""


class StateError(PECError):
    """pec_state.json is missing, unreadable, or breaks an invariant."""


class StoreError(PECError):
    """The store (local folder or S3 bucket) could not be read or written."""


class NotFoundError(StoreError):
    """A key does not exist in the store."""


class ConflictError(StoreError):
    """A conditional write lost a race: someone else wrote the object first."""


class InputError(PECError):
    """A user-supplied file or value (designs, scores, run name) is invalid."""


class JobError(PECError):
    """A training or evaluation job failed."""


class IncompleteTrainingError(JobError):
    """A training job stopped before its PPO iterations were done (killed, crashed).

    Its task fails so that a retry continues from model_last.pt; only when retries are
    exhausted does the crash rule take its best checkpoint, recorded as partial.
    """

    def __init__(self, message: str, completed: int | None, total: int) -> None:
        super().__init__(message)
        self.completed = completed
        self.total = total


# How an unfinished training describes itself in any process (a JobError's text, a task
# run's state message): "... after <k> of <N> PPO iterations ..." (k may be "?").
INCOMPLETE_TRAINING = re.compile(r"after (\d+|\?) of (\d+) PPO iterations")


def incomplete_training(error: str | None) -> tuple[int | None, int] | None:
    """(k, N) if the error says a training stopped after k of N PPO iterations."""
    match = INCOMPLETE_TRAINING.search(error or "")
    if match is None:
        return None
    done = None if match.group(1) == "?" else int(match.group(1))
    return done, int(match.group(2))


def partial_label(done: int | None, total: int) -> str:
    """What the state, `pec status` and the artifacts call an expert the crash rule kept."""
    return f"partial: {'?' if done is None else done} of {total} iterations"
