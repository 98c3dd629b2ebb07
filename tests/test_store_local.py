"""The store contract (shared with the S3 tests) and what is specific to local folders."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pec.errors import ConflictError, NotFoundError, StoreError
from pec.runs.store import LocalStore, Store, open_store

BAD_KEYS = ["", "/abs/key", "../x", "a/../b", "a/./b", "a\\b", "a//b", "a/", ".", "x\0y"]


class StoreContract:
    """Behaviour every Store must have; subclasses provide a ``store`` fixture."""

    def test_round_trip_and_overwrite(self, store: Store) -> None:
        store.write_bytes("run/a.bin", b"\x00\x01payload")
        assert store.read_bytes("run/a.bin") == b"\x00\x01payload"
        store.write_bytes("run/a.bin", b"second")
        assert store.read_bytes("run/a.bin") == b"second"
        store.write_bytes("run/empty", b"")
        assert store.read_bytes("run/empty") == b""
        store.write_text("run/t.json", '{"x": "ü"}')
        assert store.read_text("run/t.json") == '{"x": "ü"}'

    def test_missing_key(self, store: Store) -> None:
        assert not store.exists("run/none.json")
        with pytest.raises(NotFoundError, match="does not exist"):
            store.read_bytes("run/none.json")
        assert store.read_versioned("run/none.json") is None
        store.write_bytes("run/none.json", b"1")
        assert store.exists("run/none.json")
        assert not store.exists("run")  # a "folder" is not an object

    def test_list_sorted_with_string_prefix(self, store: Store) -> None:
        for key in ["r/b/2.txt", "r/a.txt", "r/b/1.txt", "r2/x", "other/y"]:
            store.write_bytes(key, b"x")
        assert store.list("r/") == ["r/a.txt", "r/b/1.txt", "r/b/2.txt"]
        assert store.list("r") == ["r/a.txt", "r/b/1.txt", "r/b/2.txt", "r2/x"]
        assert store.list("r/b/") == ["r/b/1.txt", "r/b/2.txt"]
        assert store.list("r/b/1") == ["r/b/1.txt"]
        assert store.list() == ["other/y", "r/a.txt", "r/b/1.txt", "r/b/2.txt", "r2/x"]
        assert store.list("nothing/") == []

    def test_delete(self, store: Store) -> None:
        store.write_bytes("run/d", b"x")
        store.delete("run/d")
        assert not store.exists("run/d")
        assert store.list("run/") == []
        store.delete("run/d")  # absent: no-op, like S3

    @pytest.mark.parametrize("key", BAD_KEYS)
    def test_bad_keys_rejected(self, store: Store, key: str) -> None:
        with pytest.raises(StoreError, match="store key"):
            store.write_bytes(key, b"x")
        with pytest.raises(StoreError, match="store key"):
            store.read_bytes(key)
        with pytest.raises(StoreError, match="store key"):
            store.write_conditional(key, b"x", None)

    def test_bad_list_prefix_rejected(self, store: Store) -> None:
        with pytest.raises(StoreError, match=r"'..' segment"):
            store.list("../")

    def test_uri_round_trip(self, store: Store) -> None:
        uri = store.uri("run/checkpoints/model_best.pt")
        assert uri.startswith(store.root_uri + "/")
        assert uri.endswith("/run/checkpoints/model_best.pt")
        assert store.key_for_uri(uri) == "run/checkpoints/model_best.pt"
        with pytest.raises(StoreError, match="outside the store root"):
            store.key_for_uri(store.root_uri + "-sibling/run/x")

    def test_upload_download(self, store: Store, tmp_path: Path) -> None:
        src = tmp_path / "src.pt"
        src.write_bytes(os.urandom(70_000))
        store.upload_file("run/ck/model.pt", src)
        assert store.read_bytes("run/ck/model.pt") == src.read_bytes()
        dest = tmp_path / "deep" / "down" / "copy.pt"
        store.download_file("run/ck/model.pt", dest)
        assert dest.read_bytes() == src.read_bytes()
        with pytest.raises(NotFoundError):
            store.download_file("run/ck/missing.pt", tmp_path / "m.pt")
        with pytest.raises(StoreError):
            store.upload_file("run/ck/x.pt", tmp_path / "no_such_file")

    def test_versions_change_with_content(self, store: Store) -> None:
        store.write_bytes("run/v", b"one")
        found = store.read_versioned("run/v")
        assert found is not None and found[0] == b"one"
        store.write_bytes("run/v", b"two")
        found2 = store.read_versioned("run/v")
        assert found2 is not None and found2[0] == b"two" and found2[1] != found[1]

    def test_conditional_write_semantics(self, store: Store) -> None:
        v1 = store.write_conditional("run/s.json", b"1", None)
        assert store.read_versioned("run/s.json") == (b"1", v1)
        with pytest.raises(ConflictError, match="reload and retry"):
            store.write_conditional("run/s.json", b"again", None)
        v2 = store.write_conditional("run/s.json", b"2", v1)
        assert v2 != v1
        assert store.read_versioned("run/s.json") == (b"2", v2)
        with pytest.raises(ConflictError, match="changed by another writer"):
            store.write_conditional("run/s.json", b"stale", v1)
        assert store.read_bytes("run/s.json") == b"2"
        store.delete("run/s.json")
        with pytest.raises(ConflictError):
            store.write_conditional("run/s.json", b"after delete", v2)
        assert not store.exists("run/s.json")

    def test_thread_race_has_one_winner(self, store: Store) -> None:
        for round_ in range(10):
            key = f"run/race_{round_}.json"
            base = store.write_conditional(key, b'{"writer": "base"}', None)
            barrier = threading.Barrier(4)

            def attempt(
                i: int, key: str = key, base: str = base, barrier: threading.Barrier = barrier
            ) -> str:
                barrier.wait()
                try:
                    store.write_conditional(key, json.dumps({"writer": i}).encode(), base)
                    return f"won:{i}"
                except ConflictError:
                    return "conflict"

            with ThreadPoolExecutor(4) as pool:
                outcomes = list(pool.map(attempt, range(4)))
            winners = [o for o in outcomes if o.startswith("won")]
            assert len(winners) == 1, outcomes
            assert outcomes.count("conflict") == 3
            final = json.loads(store.read_bytes(key))
            assert f"won:{final['writer']}" == winners[0]


class TestLocalStoreContract(StoreContract):
    @pytest.fixture
    def store(self, local_store: LocalStore) -> Store:
        return local_store


def test_uri_is_absolute_path(local_store: LocalStore) -> None:
    assert local_store.uri("r/x.pt") == str(local_store.root / "r" / "x.pt")
    assert os.path.isabs(local_store.uri("r/x.pt"))
    assert local_store.key_for_uri(str(local_store.root) + "/r/sub/../x.pt") == "r/x.pt"
    assert local_store.key_for_uri("file://" + str(local_store.root) + "/r/x.pt") == "r/x.pt"
    with pytest.raises(StoreError, match="not absolute"):
        local_store.key_for_uri("r/x.pt")
    with pytest.raises(StoreError, match="outside the store root"):
        local_store.key_for_uri(str(local_store.root) + "/../escape")


def test_relative_root_rejected() -> None:
    with pytest.raises(StoreError, match="relative"):
        LocalStore(Path("some/dir"))


def test_open_store_local_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("logs/pec")
    assert isinstance(store, LocalStore)
    assert store.root_uri == str(tmp_path.resolve() / "logs" / "pec")
    store.write_bytes("r/x", b"1")
    assert (tmp_path / "logs" / "pec" / "r" / "x").read_bytes() == b"1"


def test_bookkeeping_files_are_not_keys(local_store: LocalStore) -> None:
    local_store.write_conditional("r/state.json", b"1", None)
    (local_store.root / "r" / ".state.json.pec-tmp-abc").write_bytes(b"half")
    assert (local_store.root / ".pec-locks").is_dir()
    assert local_store.list() == ["r/state.json"]
    with pytest.raises(StoreError, match="reserved"):
        local_store.write_bytes(".pec-locks/x", b"1")


def test_failed_write_leaves_old_content_and_no_temp(
    local_store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    local_store.write_bytes("r/s.json", b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StoreError, match="No space left on device"):
        local_store.write_bytes("r/s.json", b"new")
    monkeypatch.undo()
    assert local_store.read_bytes("r/s.json") == b"old"
    assert os.listdir(local_store.root / "r") == ["s.json"]


def test_reader_never_sees_partial_write(local_store: LocalStore) -> None:
    """Readers racing a writer see one complete payload or the other, never a mix."""
    payloads = [bytes([65 + i]) * 400_000 for i in range(2)]
    local_store.write_bytes("r/big", payloads[0])
    stop = threading.Event()
    seen: list[bytes] = []
    bad: list[int] = []

    def reader() -> None:
        while not stop.is_set():
            data = local_store.read_bytes("r/big")
            if data not in payloads:
                bad.append(len(data))
            seen.append(data[:1])

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(40):
        local_store.write_bytes("r/big", payloads[i % 2])
    stop.set()
    thread.join()
    assert bad == []
    assert seen


def test_unreadable_root_reports_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    store = LocalStore(blocker)  # root is a file: nothing below it can be created
    with pytest.raises(StoreError, match="cannot write"):
        store.write_bytes("r/x", b"1")
