"""Run names become folder names and S3 key segments, so they are restricted to a safe set.

A name that could escape the run's folder (``..``, ``/``) or that shells and URLs treat
specially would corrupt other runs' data, so it is rejected before any key is built.
"""

from __future__ import annotations

import re

from pec.errors import InputError

RUN_NAME_RULE = (
    "1-64 characters from A-Z a-z 0-9 . _ -, starting with a letter or digit, without '..'"
)
_RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate_run_name(name: str) -> str:
    """Return ``name`` unchanged if it is a safe run name, else raise InputError."""
    if not isinstance(name, str):
        raise InputError(f"run_name must be a string, got {type(name).__name__}; {RUN_NAME_RULE}")
    if not _RUN_NAME_RE.fullmatch(name) or ".." in name:
        raise InputError(f"run_name {name!r} is invalid; use {RUN_NAME_RULE}")
    return name
