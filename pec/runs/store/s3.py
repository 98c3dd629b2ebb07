"""A store on an S3-compatible bucket (AWS S3, MinIO, R2, Ceph, SeaweedFS) via boto3.

Conditional writes use the standard ``If-None-Match: *`` / ``If-Match: <etag>`` headers,
so the server itself decides the single winner of a race on pec_state.json.
Credentials never appear in messages or reprs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NoReturn

import boto3
from boto3.exceptions import S3TransferFailedError, S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from pec.errors import ConflictError, NotFoundError, StoreError
from pec.runs.store.base import CONFLICT_HINT, Store, validate_key, validate_prefix
from pec.runs.store.s3_settings import S3Settings, check_endpoint_url, parse_s3_uri

__all__ = ["S3Settings", "S3Store", "check_endpoint_url", "parse_s3_uri"]

log = logging.getLogger(__name__)

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_AUTH = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "403",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}


class S3Store(Store):
    """Store rooted at ``s3://bucket/prefix``. Version tokens are ETags."""

    def __init__(self, bucket: str, prefix: str = "", settings: S3Settings | None = None) -> None:
        if not bucket or "/" in bucket:
            raise StoreError(f"S3 bucket name {bucket!r} is invalid; pass the bare bucket name")
        prefix = prefix.strip("/")
        if prefix:
            validate_key(prefix)
        self.bucket = bucket
        self.prefix = prefix
        self.settings = settings if settings is not None else S3Settings.from_env()
        if self.settings.endpoint_url is not None:  # also when assigned after construction
            check_endpoint_url(self.settings.endpoint_url)
        self.root_uri = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self._client = self._make_client(self.settings)

    @staticmethod
    def _make_client(settings: S3Settings) -> Any:
        s3_options: dict[str, Any] = {}
        if settings.endpoint_url:
            s3_options["addressing_style"] = "path"
        config = Config(
            retries={"mode": "standard", "total_max_attempts": settings.max_attempts},
            s3=s3_options,
            # Only checksum when the API requires it: many S3-compatible servers reject the
            # newer default CRC trailers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        kwargs: dict[str, Any] = {"config": config}
        if settings.endpoint_url:
            kwargs["endpoint_url"] = settings.endpoint_url
        if settings.region:
            kwargs["region_name"] = settings.region
        if settings.access_key_id is not None:
            kwargs["aws_access_key_id"] = settings.access_key_id
        if settings.secret_access_key is not None:
            kwargs["aws_secret_access_key"] = settings.secret_access_key
        try:
            return boto3.client("s3", **kwargs)
        except BotoCoreError as exc:
            raise StoreError(
                f"cannot create the S3 client: {type(exc).__name__}; check S3 settings"
            ) from None

    # -- keys ----------------------------------------------------------------------------
    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def key_for_uri(self, uri: str) -> str:
        root = self.root_uri + "/"
        if not uri.startswith(root):
            raise StoreError(
                f"URI {uri!r} is outside the store root {self.root_uri}; open the store that holds it"
            )
        return validate_key(uri[len(root) :])

    # -- errors --------------------------------------------------------------------------
    def _raise(self, exc: Exception, action: str, key: str | None) -> NoReturn:
        where = self.uri(key) if key is not None else self.root_uri
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if code == "NoSuchBucket":
                raise StoreError(
                    f"cannot {action} {where}: bucket {self.bucket!r} does not exist; create it first"
                ) from None
            if code in _NOT_FOUND or status == "404":
                raise NotFoundError(
                    f"{where} does not exist; write it first or check the key"
                ) from None
            if code in _CONFLICT or status in ("412", "409"):
                raise ConflictError(f"{where} {CONFLICT_HINT}") from None
            if code in _AUTH or status == "403":
                raise StoreError(
                    f"cannot {action} {where}: the S3 server rejected the credentials ({code}); "
                    "check the access key id / secret (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) "
                    "and the bucket policy"
                ) from None
            raise StoreError(
                f"cannot {action} {where}: S3 error {code or status}; check the endpoint and bucket"
            ) from None
        if isinstance(exc, NoCredentialsError):
            raise StoreError(
                f"cannot {action} {where}: no S3 credentials in this process; they must be "
                "visible where pec runs, which under Prefect is the worker's flow-run process, "
                "not the shell that ran `prefect deployment run`: pass a saved AwsCredentials "
                "block (-p aws_credentials_block=pec-aws, docs/DEPLOYING.md §1) or set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile/role) in the "
                "worker's environment"
            ) from None
        raise StoreError(
            f"cannot {action} {where}: {type(exc).__name__}; check PEC_S3_ENDPOINT_URL and network"
        ) from None

    # -- plain I/O -----------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        result = self.read_versioned(key)
        if result is None:
            raise NotFoundError(f"{self.uri(key)} does not exist; write it first or check the key")
        return result[0]

    def write_bytes(self, key: str, data: bytes) -> None:
        full = self._full(key)
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=bytes(data))
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "write", key)

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=full)
        except ClientError as exc:
            try:
                self._raise(exc, "check", key)
            except NotFoundError:
                return False
        except BotoCoreError as exc:
            self._raise(exc, "check", key)
        return True

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        keys: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for obj in page.get("Contents", []):
                    keys.append(str(obj["Key"])[len(root) :])
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "list", None)
        return sorted(keys)

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "delete", key)

    def upload_file(self, key: str, path: Path) -> None:
        full = self._full(key)
        if not Path(path).is_file():
            raise StoreError(f"cannot upload {path}: not a file; check the path")
        try:
            self._client.upload_file(str(path), self.bucket, full)
        except S3UploadFailedError as exc:
            cause = exc.__context__
            if isinstance(cause, ClientError | BotoCoreError):
                self._raise(cause, "upload", key)
            raise StoreError(f"cannot upload {path} to {self.uri(key)}; check the bucket") from None
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "upload", key)

    def download_file(self, key: str, path: Path) -> None:
        full = self._full(key)
        dest = Path(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._client.download_file(self.bucket, full, str(dest))
        except (ClientError, BotoCoreError) as exc:
            self._raise(exc, "download", key)
        except S3TransferFailedError:
            raise StoreError(f"cannot download {self.uri(key)} to {dest}; retry") from None

    # -- versioned I/O -------------------------------------------------------------------
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        full = self._full(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            data = response["Body"].read()
        except ClientError as exc:
            try:
                self._raise(exc, "read", key)
            except NotFoundError:
                return None
        except BotoCoreError as exc:
            self._raise(exc, "read", key)
        return bytes(data), str(response["ETag"])

    def write_conditional(self, key: str, data: bytes, expected_version: str | None) -> str:
        full = self._full(key)
        condition: dict[str, str] = (
            {"IfNoneMatch": "*"} if expected_version is None else {"IfMatch": expected_version}
        )
        try:
            response = self._client.put_object(
                Bucket=self.bucket, Key=full, Body=bytes(data), **condition
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            # If-Match on an object that is gone is a 404 on some servers: still a lost race.
            if expected_version is not None and (code in _NOT_FOUND):
                raise ConflictError(f"{self.uri(key)} was deleted: it {CONFLICT_HINT}") from None
            self._raise(exc, "write", key)
        except BotoCoreError as exc:
            self._raise(exc, "write", key)
        version = str(response.get("ETag", ""))
        log.debug("conditional write of %s", self.uri(key))
        return version
