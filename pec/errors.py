"""One error family for pec, so the CLI can turn any of them into a one-line message.

Every message names the offending field or object and says how to fix it.
"""

from __future__ import annotations


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
