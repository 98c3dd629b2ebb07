"""The store interface: a flat key/value view of a folder or an S3 prefix.

Everything a run produces goes through this interface so that the same flow runs on a
laptop (local folder) and in production (S3-compatible bucket). Keys are relative,
``/``-separated, and validated so that no key can escape the store root.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from pec.errors import StoreError

CONFLICT_HINT = "was changed by another writer since it was read; reload and retry"


def validate_key(key: str) -> str:
    """Reject keys that could escape the root or mean different things on different stores."""
    if not isinstance(key, str) or not key:
        raise StoreError(f"store key {key!r} is empty; pass a relative key such as 'run/file.json'")
    if "\\" in key or "\0" in key:
        raise StoreError(f"store key {key!r} contains a backslash or NUL; use '/' separators only")
    if key.startswith("/"):
        raise StoreError(f"store key {key!r} is absolute; pass a key relative to the store root")
    segments = key.split("/")
    if any(s == "" for s in segments):
        raise StoreError(
            f"store key {key!r} has an empty segment ('//' or trailing '/'); remove it"
        )
    if any(s in (".", "..") for s in segments):
        raise StoreError(f"store key {key!r} has a '.' or '..' segment; keys cannot leave the root")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix: empty (everything), or a key optionally ending in '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix.removesuffix("/"))
    return prefix


class Store(ABC):
    """One run store. Implementations: LocalStore (folder), S3Store (bucket/prefix)."""

    root_uri: str

    @abstractmethod
    def read_bytes(self, key: str) -> bytes:
        """Whole object; NotFoundError if absent."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Replace the object atomically: readers see the old or the new bytes, never a mix."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix`` (plain string prefix), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; deleting an absent key is a no-op (as on S3)."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """Absolute URI of a key: an absolute local path or ``s3://bucket/prefix/key``."""

    @abstractmethod
    def key_for_uri(self, uri: str) -> str:
        """Inverse of :meth:`uri`; StoreError if the URI is not inside this store."""

    @abstractmethod
    def upload_file(self, key: str, path: Path) -> None: ...

    @abstractmethod
    def download_file(self, key: str, path: Path) -> None:
        """Copy the object to ``path`` (parents created); NotFoundError if absent."""

    @abstractmethod
    def read_versioned(self, key: str) -> tuple[bytes, str] | None:
        """(data, version token) for a later :meth:`write_conditional`, or None if absent."""

    @abstractmethod
    def write_conditional(self, key: str, data: bytes, expected_version: str | None) -> str:
        """Write only if the object is still at ``expected_version`` (None: must not exist).

        Returns the new version token; a lost race raises ConflictError. This is what keeps
        a second writer of pec_state.json from silently overwriting the first.
        """

    def read_text(self, key: str) -> str:
        return self.read_bytes(key).decode("utf-8")

    def write_text(self, key: str, text: str) -> None:
        self.write_bytes(key, text.encode("utf-8"))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root_uri!r})"
