"""Storage outages: the S3 server stops answering (or answers 503) in the middle of a run.

A small fault-injecting HTTP proxy sits between boto3 and SeaweedFS (real protocol, real
SigV4: the proxy forwards the signed request untouched). Proves: botocore's standard retry
mode rides out short outages with a bounded number of attempts and backoff; a long outage
ends in one clean StoreError; an iteration cut by an outage leaves the state untouched and
a later re-run completes it exactly as an uninterrupted run would have.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import torch
from support.s3_server import S3TestServer

from flows.tasks import transient_storage_failure
from pec.errors import ConflictError, JobError, NotFoundError, StoreError
from pec.iteration.driver import run_until_done
from pec.iteration.run_setup import initialise_run
from pec.jobs.executors import InProcessExecutor
from pec.jobs.runner import LocalJobRunner
from pec.presentation.visualize import render_all_soft
from pec.runs.config import load_config
from pec.runs.job_records import StoreSpec
from pec.runs.run import make_run
from pec.runs.state_io import load_state
from pec.runs.store import LocalStore, S3Store

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "tiny.yaml")
RUN = "outage"
ATTEMPTS = 3  # S3Settings.max_attempts = every attempt, the first one included

SERVICE_UNAVAILABLE = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable</Code>'
    b"<Message>injected outage</Message></Error>"
)


class FaultProxy:
    """Forwards HTTP to `upstream`; `mode` "pass", "error" (503 S3 error) or "drop" (closes
    the connection without an answer, as a dead server would). `trip` switches to "error"
    when a request matches it, so an outage can start at a chosen point of an iteration."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.mode = "pass"
        self.fail_next = 0  # fail this many requests, then pass
        self.trip: Callable[[str, str], bool] | None = None
        self.log: list[tuple[str, str, str]] = []  # (method, path, what happened)
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                outcome = proxy.decide(self.command, self.path)
                if outcome == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if outcome == "error":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SERVICE_UNAVAILABLE)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SERVICE_UNAVAILABLE)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                conn = http.client.HTTPConnection(
                    proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port, timeout=60
                )
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                finally:
                    conn.close()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def decide(self, method: str, path: str) -> str:
        with self.lock:
            if self.trip is not None and self.trip(method, path):
                self.trip, self.mode = None, "error"
            outcome = self.mode
            if outcome == "pass" and self.fail_next > 0:
                self.fail_next -= 1
                outcome = "error"
            self.log.append((method, path, outcome))
            return outcome

    def attempts(self, method: str, fragment: str) -> list[str]:
        with self.lock:
            return [o for m, p, o in self.log if m == method and fragment in p]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(s3_server: S3TestServer) -> Iterator[FaultProxy]:
    fault = FaultProxy(s3_server.endpoint_url)
    try:
        yield fault
    finally:
        fault.close()


@pytest.fixture
def proxied_env(
    s3_server: S3TestServer, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> S3TestServer:
    """Jobs open the store from the environment, like a worker would."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("PEC_S3_MAX_ATTEMPTS", str(ATTEMPTS))
    monkeypatch.setenv("PEC_S3_ENDPOINT_URL", proxy.endpoint_url)
    return s3_server


def proxied_store(server: S3TestServer, proxy: FaultProxy) -> S3Store:
    bucket = server.make_bucket()
    settings = server.settings(endpoint_url=proxy.endpoint_url, max_attempts=ATTEMPTS)
    return S3Store(bucket, f"runs-{uuid.uuid4().hex[:8]}", settings)


def test_short_outage_is_ridden_out_by_botocore_retries(
    s3_server: S3TestServer, proxy: FaultProxy
) -> None:
    store = proxied_store(s3_server, proxy)
    proxy.fail_next = ATTEMPTS - 1
    store.write_bytes("a/b.json", b"{}")
    assert proxy.attempts("PUT", "/a/b.json") == ["error"] * (ATTEMPTS - 1) + ["pass"]
    assert store.read_bytes("a/b.json") == b"{}"


@pytest.mark.parametrize("mode", ["error", "drop"])
def test_long_outage_fails_cleanly_after_bounded_attempts(
    mode: str, s3_server: S3TestServer, proxy: FaultProxy
) -> None:
    store = proxied_store(s3_server, proxy)
    proxy.mode = mode
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        store.write_bytes("a/b.json", b"{}")
    elapsed = time.monotonic() - started
    assert len(proxy.attempts("PUT", "/a/b.json")) == ATTEMPTS
    # standard mode: jittered exponential backoff, at most 1 + 2 s between 3 attempts
    assert elapsed < 15.0
    message = str(caught.value)
    assert "cannot write" in message and s3_server.secret_key not in message
    assert len(message.splitlines()) == 1
    proxy.mode = "pass"
    store.write_bytes("a/b.json", b"{}")  # the same call works once the server is back


def _normalised_state(store: Any) -> dict[str, Any]:
    loaded = load_state(store, RUN)
    assert loaded is not None
    text = json.dumps(loaded[0].model_dump(mode="json"))
    return dict(json.loads(text.replace(store.root_uri, "<store>")))


@pytest.fixture(scope="module")
def reference_state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same run, never interrupted, on a local folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("outage-ref")
    store = LocalStore(root)
    run = make_run(store, StoreSpec(location=str(root)), RUN, load_config(TINY))
    run_until_done(run, LocalJobRunner(InProcessExecutor()), plot=render_all_soft)
    return _normalised_state(store)


OUTAGES = {
    # the first upload of a trained checkpoint: the expert fails, no checkpoint at all
    "mid-training": lambda m, p: m == "PUT" and p.endswith("/expert_1/iter_0/model_best.pt"),
    # the refit's conditional state write of iteration 1
    "state-write": lambda m, p: m == "PUT" and p.endswith("/pec_state.json"),
}


@pytest.mark.parametrize("where", sorted(OUTAGES))
def test_outage_mid_iteration_fails_cleanly_and_a_rerun_completes(
    where: str,
    proxied_env: S3TestServer,
    proxy: FaultProxy,
    reference_state: dict[str, Any],
) -> None:
    torch.set_num_threads(1)
    store = proxied_store(proxied_env, proxy)
    spec = StoreSpec(location=store.root_uri, endpoint_url=proxy.endpoint_url)
    run = make_run(store, spec, RUN, load_config(TINY))
    initialise_run(run)  # its state write is before the outage
    before = store.read_bytes(f"{RUN}/pec_state.json")
    proxy.trip = OUTAGES[where]
    with pytest.raises((StoreError, JobError)) as caught:
        run_until_done(run, LocalJobRunner(InProcessExecutor()), plot=render_all_soft)
    assert proxied_env.secret_key not in str(caught.value)
    proxy.mode = "pass"
    # no partial state: still the state init wrote, byte for byte
    assert store.read_bytes(f"{RUN}/pec_state.json") == before

    final = run_until_done(run, LocalJobRunner(InProcessExecutor()), plot=render_all_soft)
    assert final.iteration == 2
    assert _normalised_state(store) == reference_state


def test_prefect_retries_only_transient_storage_failures() -> None:
    def state_of(exc: BaseException) -> Any:
        class Failed:
            def result(self) -> Any:
                raise exc

        return Failed()

    outage = StoreError("cannot write s3://b/x: S3 error 503; check the endpoint and bucket")
    wrapped = JobError("training failed before writing model_best.pt: StoreError")
    wrapped.__cause__ = outage
    assert transient_storage_failure(None, None, state_of(outage))
    assert transient_storage_failure(None, None, state_of(wrapped))
    assert not transient_storage_failure(None, None, state_of(ConflictError("lost race")))
    assert not transient_storage_failure(None, None, state_of(NotFoundError("gone")))
    assert not transient_storage_failure(None, None, state_of(JobError("diverged")))
