"""Where an S3 store lives and how to reach it, without boto3.

`S3Settings`, the endpoint check and the ``s3://`` parser are what a job spec, the CLI and
`open_store` need before any bucket is touched; boto3 is imported only by
`pec.runs.store.s3` when an `S3Store` is made, so a job on a local store runs on a host
without boto3 (tests/test_light_job.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pec.errors import StoreError


@dataclass
class S3Settings:
    """How to reach the bucket. None fields fall back to boto3's standard credential chain."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    max_attempts: int = 5

    def __post_init__(self) -> None:
        if self.endpoint_url is not None:
            check_endpoint_url(self.endpoint_url)

    def __repr__(self) -> str:
        secret = None if self.secret_access_key is None else "***"
        return (
            f"S3Settings(endpoint_url={self.endpoint_url!r}, region={self.region!r}, "
            f"access_key_id={self.access_key_id!r}, secret_access_key={secret!r}, "
            f"max_attempts={self.max_attempts!r})"
        )

    @classmethod
    def from_env(cls) -> S3Settings:
        """PEC_S3_* variables; credentials are left to boto3 (AWS_* variables, profiles, roles)."""
        attempts = os.environ.get("PEC_S3_MAX_ATTEMPTS", "5")
        try:
            max_attempts = int(attempts)
        except ValueError:
            raise StoreError(
                f"PEC_S3_MAX_ATTEMPTS={attempts!r} is not an integer; set it to e.g. 5"
            ) from None
        return cls(
            endpoint_url=os.environ.get("PEC_S3_ENDPOINT_URL") or None,
            region=os.environ.get("PEC_S3_REGION") or None,
            max_attempts=max_attempts,
        )


def check_endpoint_url(value: str) -> str:
    """An S3 endpoint must be ``http(s)://host[:port][/path]`` without user:password@.

    The value is never echoed whole (a mistyped one may hold a secret); the message names
    the variable, its length and what is wrong.
    """
    where = f"the S3 endpoint URL (PEC_S3_ENDPOINT_URL, {len(value)} characters, not shown)"
    example = "set it like https://s3.example.com or http://127.0.0.1:9000"
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises on a port that is not a number in 0..65535
    except ValueError:
        raise StoreError(f"{where} is not a URL; {example}") from None
    if parts.scheme not in ("http", "https"):
        raise StoreError(f"{where} does not start with http:// or https://; {example}")
    if not parts.hostname:
        raise StoreError(f"{where} has no host name; {example}")
    if parts.username is not None or parts.password is not None:
        raise StoreError(
            f"{where} holds user:password@; pass credentials in AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY (or a profile), never in the URL"
        )
    if any(c.isspace() for c in value) or parts.query or parts.fragment:
        raise StoreError(f"{where} holds spaces, '?' or '#'; {example}")
    return value


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    if not uri.startswith("s3://"):
        raise StoreError(f"{uri!r} is not an s3:// URI; use s3://bucket/prefix")
    rest = uri[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StoreError(f"{uri!r} has no bucket name; use s3://bucket/prefix")
    return bucket, prefix.strip("/")
