"""A store on a local folder: atomic writes by temp file + rename, conditional writes under
an advisory file lock so concurrent processes on one machine cannot both win.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from pec.errors import ConflictError, NotFoundError, StoreError
from pec.runs.store.base import CONFLICT_HINT, Store, validate_key, validate_prefix

log = logging.getLogger(__name__)

# Bookkeeping that lives inside the root but is never a key: lock files and in-flight temps.
LOCK_DIR = ".pec-locks"
TMP_MARK = ".pec-tmp-"


def _version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStore(Store):
    """Folder-backed store. Version tokens are the sha256 of the content."""

    def __init__(self, root: Path) -> None:
        root = Path(root)
        if not root.is_absolute():
            raise StoreError(f"local store root {str(root)!r} is relative; pass an absolute path")
        self.root = root
        self.root_uri = str(root)
        self._real_root = os.path.realpath(root)

    # -- paths ---------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        validate_key(key)
        first = key.split("/", 1)[0]
        if first == LOCK_DIR or TMP_MARK in key:
            raise StoreError(f"store key {key!r} uses a name reserved for the store's bookkeeping")
        return self._inside(self.root / key)

    def _inside(self, path: Path) -> Path:
        """``path`` unless a symlink on the way leads out of the store: never read or write
        through one (a run folder linked to /etc, a state file linked to a user's file)."""
        real = os.path.realpath(path)
        if real != self._real_root and not real.startswith(self._real_root.rstrip("/") + "/"):
            link = path
            for parent in [path, *path.parents]:
                if parent == self.root:
                    break
                if parent.is_symlink():
                    link = parent
            raise StoreError(
                f"{link} is a symlink leading outside the store {self.root}; pec never reads or "
                "writes through it: replace the link with a real folder or file"
            )
        return path

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def key_for_uri(self, uri: str) -> str:
        uri = uri.removeprefix("file://")
        path = Path(uri)
        if not path.is_absolute():
            raise StoreError(
                f"URI {uri!r} is not absolute; pass an absolute path inside {self.root}"
            )
        try:
            rel = Path(os.path.normpath(path)).relative_to(os.path.normpath(self.root))
        except ValueError:
            raise StoreError(
                f"URI {uri!r} is outside the store root {self.root}; open the store that holds it"
            ) from None
        key = rel.as_posix()
        self._path(key)
        return key

    # -- plain I/O -----------------------------------------------------------------------
    def read_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"{path} does not exist; write it first or check the key") from None
        except IsADirectoryError:
            raise NotFoundError(f"{path} is a folder, not an object; check the key") from None
        except OSError as exc:
            raise StoreError(f"cannot read {path}: {exc.strerror}; check permissions") from None

    def _atomic_write(self, path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{TMP_MARK}")
        except OSError as exc:
            raise StoreError(f"cannot write {path}: {exc.strerror}; check permissions") from None
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if "PEC_FAULT_POINT" in os.environ:  # crash-safety tests only (pec.runs.state_io)
                from pec.faults import fault_point

                fault_point(f"store-before-rename/{path.name}")
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                raise StoreError(
                    f"cannot write {path}: {exc.strerror}; check disk space and permissions"
                ) from None
            raise

    def write_bytes(self, key: str, data: bytes) -> None:
        self._atomic_write(self._path(key), bytes(data))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        validate_prefix(prefix)
        # Walk only the deepest folder the prefix pins down, then filter by string prefix.
        base_rel = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / base_rel if base_rel else self.root
        if not base.is_dir():
            return []
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            if rel_dir == ".":
                rel_dir = ""
                dirnames[:] = [d for d in dirnames if d != LOCK_DIR]
            for name in filenames:
                if TMP_MARK in name:
                    continue
                key = f"{rel_dir}/{name}" if rel_dir else name
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"cannot delete {path}: {exc.strerror}; check permissions") from None

    def upload_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise StoreError(
                f"cannot read local file {path}: {exc.strerror}; check it exists"
            ) from None
        self._atomic_write(target, data)

    def download_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise NotFoundError(f"{source} does not exist; write it first or check the key")
        dest = Path(path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        except OSError as exc:
            raise StoreError(f"cannot copy {source} to {dest}: {exc.strerror}") from None

    # -- versioned I/O -------------------------------------------------------------------
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self.read_bytes(key)
        except NotFoundError:
            return None
        return data, _version(data)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock_dir = self._inside(self.root / LOCK_DIR)
        lock_path = lock_dir / (hashlib.sha256(key.encode("utf-8")).hexdigest() + ".lock")
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot create lock file {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def write_conditional(self, key: str, data: bytes, expected_version: str | None) -> str:
        path = self._path(key)
        with self._locked(key):
            current = self.read_versioned(key)
            current_version = None if current is None else current[1]
            if current_version != expected_version:
                if expected_version is None:
                    raise ConflictError(f"{path} already exists: it {CONFLICT_HINT}")
                raise ConflictError(f"{path} {CONFLICT_HINT}")
            self._atomic_write(path, bytes(data))
        log.debug("conditional write of %s", path)
        return _version(bytes(data))
