"""S3 credentials for a flow run, carried by a Prefect `AwsCredentials` block.

A deployment's flow runs execute in the worker's process: what the user exported in the
shell that ran `prefect deployment run` is not there. Naming a saved block in the run's
parameters (`aws_credentials_block`) makes the credentials reach it through the Prefect
server; they are exported into this process's environment, where the store, the job
subprocesses and the Docker executor (which forwards `AWS_*`) all read them.
"""

from __future__ import annotations

import os
from typing import cast

from pec.errors import ConfigError

SAVE_HINT = "python deployments/save_aws_credentials.py (docs/DEPLOYING.md §1)"


def apply_aws_credentials(block_name: str | None) -> None:
    """Export the named AwsCredentials block into os.environ; nothing when no name is given."""
    if not block_name:
        return
    from prefect_aws import AwsCredentials

    try:
        credentials = cast(AwsCredentials, AwsCredentials.load(block_name))
    except ValueError:
        raise ConfigError(
            f"aws_credentials_block '{block_name}': no AwsCredentials block of that name on "
            f"this Prefect server; create it with {SAVE_HINT}"
        ) from None
    values: dict[str, str | None] = {
        "AWS_ACCESS_KEY_ID": credentials.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": (
            credentials.aws_secret_access_key.get_secret_value()
            if credentials.aws_secret_access_key is not None
            else None
        ),
        "AWS_SESSION_TOKEN": credentials.aws_session_token,
        "AWS_DEFAULT_REGION": credentials.region_name,
        "AWS_PROFILE": credentials.profile_name,
    }
    endpoint = credentials.aws_client_parameters.endpoint_url
    if endpoint and not os.environ.get("PEC_S3_ENDPOINT_URL"):
        values["PEC_S3_ENDPOINT_URL"] = str(endpoint)
    if not values["AWS_ACCESS_KEY_ID"] and not values["AWS_PROFILE"]:
        raise ConfigError(
            f"aws_credentials_block '{block_name}' holds no access key id or profile; "
            f"save it again with {SAVE_HINT}"
        )
    os.environ.update({name: value for name, value in values.items() if value})
