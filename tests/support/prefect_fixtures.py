"""Prefect test fixtures, registered from conftest.py with `pytest_plugins`.

One temporary Prefect server (SQLite) per test session: starting it costs ~10 s, so every
flow test shares it. The start timeout is generous because 2-core CI runners are slow.
`postgres_server` is a PostgreSQL server for the tests that run `prefect server` on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness

from support.postgres import PostgresServer, start_postgres


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A throwaway Prefect API for this session; PREFECT_API_URL points at it meanwhile."""
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL 15 server per session (tests/support/postgres.py); each Prefect
    server that wants it creates its own database on it."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
