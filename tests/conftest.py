"""Shared fixtures: test environment variables, a real S3 server (SeaweedFS), stores."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.s3_server import S3TestServer, start_s3_server

from pec.runs.store import LocalStore, S3Store

pytest_plugins = ["support.prefect_fixtures", "support.docker_engine"]


@pytest.fixture(autouse=True, scope="session")
def _test_environment() -> Iterator[None]:
    """No analytics calls from Prefect, no GUI backend for matplotlib."""
    saved = {k: os.environ.get(k) for k in ("PREFECT_SERVER_ANALYTICS_ENABLED", "MPLBACKEND")}
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["MPLBACKEND"] = "Agg"
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3TestServer]:
    """One ``weed mini`` per test session on free loopback ports; stopped by PID at the end.

    Attributes: endpoint_url, access_key, secret_key, bucket (created at start);
    methods: make_bucket(name=None) -> str, settings(**overrides) -> S3Settings, client().
    """
    server = start_s3_server(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_store(s3_server: S3TestServer) -> S3Store:
    """A fresh S3Store on a fresh bucket and prefix for each test."""
    bucket = s3_server.make_bucket()
    return S3Store(bucket, f"runs-{uuid.uuid4().hex[:8]}", s3_server.settings())


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A fresh LocalStore in the test's temporary folder."""
    root = tmp_path / "store"
    root.mkdir()
    return LocalStore(root)
