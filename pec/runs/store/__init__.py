"""Where a run's files live: a local folder or an S3-compatible bucket, behind one interface."""

from __future__ import annotations

from pathlib import Path

from pec.runs.store.base import Store, validate_key
from pec.runs.store.local import LocalStore
from pec.runs.store.s3 import S3Settings, S3Store, parse_s3_uri

__all__ = [
    "LocalStore",
    "S3Settings",
    "S3Store",
    "Store",
    "open_store",
    "parse_s3_uri",
    "validate_key",
]


def open_store(location: str, s3: S3Settings | None = None) -> Store:
    """``s3://bucket/prefix`` -> S3Store; anything else is a local folder (made absolute)."""
    if location.startswith("s3://"):
        bucket, prefix = parse_s3_uri(location)
        return S3Store(bucket, prefix, s3 if s3 is not None else S3Settings.from_env())
    return LocalStore(Path(location).expanduser().resolve())
