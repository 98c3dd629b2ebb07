"""S3Store against a real S3 server (SeaweedFS over HTTP on 127.0.0.1)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from support.s3_server import S3TestServer
from test_store_local import StoreContract

from pec.errors import NotFoundError, StoreError
from pec.runs.store import S3Settings, S3Store, Store, open_store

pytestmark = pytest.mark.s3


class TestS3StoreContract(StoreContract):
    @pytest.fixture
    def store(self, s3_store: S3Store) -> Store:
        return s3_store


def test_uri_format(s3_server: S3TestServer) -> None:
    bucket = s3_server.make_bucket()
    store = S3Store(bucket, "/deep/prefix/", s3_server.settings())
    assert store.root_uri == f"s3://{bucket}/deep/prefix"
    assert store.uri("r/x.pt") == f"s3://{bucket}/deep/prefix/r/x.pt"
    assert store.key_for_uri(f"s3://{bucket}/deep/prefix/r/x.pt") == "r/x.pt"
    with pytest.raises(StoreError, match="outside the store root"):
        store.key_for_uri(f"s3://{bucket}/other/r/x.pt")
    with pytest.raises(StoreError, match="outside the store root"):
        store.key_for_uri("/local/path/r/x.pt")
    bare = S3Store(bucket, "", s3_server.settings())
    assert bare.uri("r/x.pt") == f"s3://{bucket}/r/x.pt"
    bare.write_bytes("r/x.pt", b"1")
    assert bare.list() == ["r/x.pt"]


def test_prefixes_isolate_stores(s3_server: S3TestServer) -> None:
    bucket = s3_server.make_bucket()
    a = S3Store(bucket, "a", s3_server.settings())
    ab = S3Store(bucket, "ab", s3_server.settings())
    a.write_bytes("k", b"a")
    ab.write_bytes("k", b"ab")
    assert a.list() == ["k"] and ab.list() == ["k"]
    assert a.read_bytes("k") == b"a"


def test_open_store_from_environment(
    s3_server: S3TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_server.make_bucket()
    monkeypatch.setenv("PEC_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    store = open_store(f"s3://{bucket}/runs")
    assert isinstance(store, S3Store)
    assert store.root_uri == f"s3://{bucket}/runs"
    store.write_bytes("demo/pec_state.json", b"{}")
    assert (
        s3_server.client().get_object(Bucket=bucket, Key="runs/demo/pec_state.json")["Body"].read()
        == b"{}"
    )


def test_wrong_credentials_clear_error_without_secret(s3_server: S3TestServer) -> None:
    secret = "definitely-wrong-secret-XYZ"
    store = S3Store(
        s3_server.bucket, "p", s3_server.settings(secret_access_key=secret, max_attempts=1)
    )
    for action in (
        lambda: store.read_bytes("k"),
        lambda: store.write_bytes("k", b"1"),
        lambda: store.write_conditional("k", b"1", None),
        lambda: store.list(),
    ):
        with pytest.raises(StoreError, match="rejected the credentials") as info:
            action()
        assert not isinstance(info.value, NotFoundError)
        assert secret not in str(info.value)
        assert s3_server.secret_key not in str(info.value)
    assert secret not in repr(store.settings)
    assert secret not in repr(store)


def test_settings_repr_hides_secret() -> None:
    s = S3Settings(endpoint_url="http://h:1", access_key_id="AKIA", secret_access_key="s3cr3t")
    assert "s3cr3t" not in repr(s) and "***" in repr(s)
    assert "s3cr3t" not in str(s)


def test_missing_bucket(s3_server: S3TestServer) -> None:
    store = S3Store("pec-no-such-bucket", "p", s3_server.settings(max_attempts=1))
    with pytest.raises(StoreError, match="bucket 'pec-no-such-bucket' does not exist"):
        store.write_bytes("k", b"1")
    with pytest.raises(StoreError, match="does not exist"):
        store.list()


def test_unreachable_endpoint(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{port}",
        region="us-east-1",
        access_key_id="k",
        secret_access_key="hidden-secret",
        max_attempts=1,
    )
    store = S3Store("bucket", "p", settings)
    with pytest.raises(StoreError, match="EndpointConnectionError") as info:
        store.read_bytes("k")
    assert "hidden-secret" not in str(info.value)


def test_invalid_bucket_and_uri() -> None:
    with pytest.raises(StoreError, match="bucket name"):
        S3Store("a/b", "", S3Settings(endpoint_url="http://h:1"))
    with pytest.raises(StoreError, match="no bucket name"):
        open_store("s3:///prefix", S3Settings(endpoint_url="http://h:1"))
