"""Save the S3 credentials of this shell as a Prefect `AwsCredentials` block (idempotent).

A flow run executes in the *worker's* process, not in the shell that ran
`prefect deployment run`, so credentials exported here never reach it by themselves. The
block carries them through the Prefect server: pass its name to a run
(`-p aws_credentials_block=pec-aws`) or put it in the deployment's parameters, and the
flow exports it into its own environment before it opens the store (docs/DEPLOYING.md §1).

Reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, optional AWS_SESSION_TOKEN,
AWS_DEFAULT_REGION and PEC_S3_ENDPOINT_URL (MinIO, SeaweedFS, R2, Ceph); never arguments.
"""

from __future__ import annotations

import argparse
import os
import sys

from _server import connect

DEFAULT_NAME = "pec-aws"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default=DEFAULT_NAME, help="block name (default: pec-aws)")
    args = parser.parse_args(argv)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not key or not secret:
        sys.exit("error: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set; export them")
    connect().__exit__(None, None, None)  # a reachable server, not an ephemeral one

    from prefect_aws import AwsCredentials
    from prefect_aws.client_parameters import AwsClientParameters
    from pydantic import SecretStr

    endpoint = os.environ.get("PEC_S3_ENDPOINT_URL") or None
    token = os.environ.get("AWS_SESSION_TOKEN") or None
    AwsCredentials(
        aws_access_key_id=key,
        aws_secret_access_key=SecretStr(secret),
        aws_session_token=token,
        region_name=os.environ.get("AWS_DEFAULT_REGION") or None,
        aws_client_parameters=AwsClientParameters(endpoint_url=endpoint),
    ).save(args.name, overwrite=True)
    print(f"block aws-credentials/{args.name} saved (endpoint {endpoint or 'AWS default'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
