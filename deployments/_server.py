"""Shared by the setup scripts: refuse to run against anything but a reachable server.

Without PREFECT_API_URL, Prefect would silently start a throw-away ephemeral server and the
pools, blocks and automations created there would vanish when the script exits.
"""

from __future__ import annotations

import sys

from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.settings import PREFECT_API_URL


def connect() -> SyncPrefectClient:
    """A client for the configured server, or exit 1 with a one-line reason."""
    url = PREFECT_API_URL.value()
    if not url:
        sys.exit(
            "error: PREFECT_API_URL is not set; point it at your server "
            "(e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api) and rerun"
        )
    client = get_client(sync_client=True)
    client.__enter__()
    failure = client.api_healthcheck()
    if failure is not None:
        client.__exit__(None, None, None)
        sys.exit(
            f"error: Prefect server unreachable at {url} ({type(failure).__name__}); "
            "start it (prefect server start) or fix PREFECT_API_URL"
        )
    return client
