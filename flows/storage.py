"""Where Prefect persists task results for a run: inside the run's own store.

The cache is skip-if-done only if every process that may re-run an iteration (a retry on
another worker, a restarted container) reads the same records, so the records live next to
the run's data: `<store>/<run>/prefect-results/` on disk, or the same prefix in the bucket.
"""

from __future__ import annotations

import hashlib
import posixpath
from pathlib import Path

from pec.runs import layout
from pec.runs.run import Run
from pec.runs.store import parse_s3_uri

RESULTS_BLOCK_PREFIX = "pec-results-"


def result_storage_for(run: Run) -> Path | str:
    """A path (local store) or the slug of a saved S3Bucket block (S3 store)."""
    location = run.store_spec.location
    if location.startswith("s3://"):
        return _s3_results_block(run)
    return Path(location) / layout.prefect_results_prefix(run.name).rstrip("/")


def _s3_results_block(run: Run) -> str:
    """Save (idempotently) an S3Bucket block for the run's results folder; return its slug.

    Prefect accepts only saved blocks as result storage. The block holds the bucket, folder,
    endpoint and region but no credentials: boto3 reads those from the environment of
    whichever process touches the results.
    """
    from prefect_aws import AwsCredentials, S3Bucket
    from prefect_aws.client_parameters import AwsClientParameters

    spec = run.store_spec
    bucket, prefix = parse_s3_uri(spec.location)
    folder = posixpath.join(prefix, layout.prefect_results_prefix(run.name)).strip("/")
    client_parameters = AwsClientParameters()
    if spec.endpoint_url:
        # S3-compatible servers: path-style addressing, no optional checksum trailers.
        client_parameters = AwsClientParameters(
            endpoint_url=spec.endpoint_url,
            config={
                "s3": {"addressing_style": "path"},
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            },
        )
    credentials = AwsCredentials(region_name=spec.region, aws_client_parameters=client_parameters)
    identity = f"{bucket}|{folder}|{spec.endpoint_url}|{spec.region}"
    name = RESULTS_BLOCK_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:16]
    S3Bucket(bucket_name=bucket, credentials=credentials, bucket_folder=folder).save(
        name, overwrite=True
    )
    return f"s3-bucket/{name}"
