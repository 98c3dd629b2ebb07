"""Where a run's files live: a local folder or an S3-compatible bucket, behind one interface.

`S3Store` (and with it boto3) is imported on first use, so a local store needs no boto3.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pec.runs.store.base import Store, validate_key
from pec.runs.store.local import LocalStore
from pec.runs.store.s3_settings import S3Settings, parse_s3_uri

if TYPE_CHECKING:
    from pec.runs.store.s3 import S3Store

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
        from pec.runs.store.s3 import S3Store  # lazy: boto3 only for an S3 store

        bucket, prefix = parse_s3_uri(location)
        return S3Store(bucket, prefix, s3 if s3 is not None else S3Settings.from_env())
    return LocalStore(Path(location).expanduser().resolve())


def __getattr__(name: str) -> object:
    """`S3Store` on first access (PEP 562), importing boto3 then."""
    if name == "S3Store":
        from pec.runs.store.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
