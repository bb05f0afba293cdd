"""The object-store interface, its errors, and the one place where keys are validated.

A store maps keys (``datasets/<version>.npz``) to immutable-looking blobs. Every ``put`` is atomic
(no reader ever sees half a blob) and records the blob's sha256; every ``get`` checks it. URIs
(``file:///root/key``, ``s3://bucket/prefix/key``) name a key inside one store; a URI that points
elsewhere is refused instead of being followed.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._=+@-]*")
MAX_KEY_LEN = 1024


class StorageError(Exception):
    """Base class of storage failures."""


class InvalidKey(StorageError, ValueError):
    """A key or URI that this store refuses (traversal, absolute path, foreign bucket, odd characters)."""


class BlobNotFound(StorageError):
    """Nothing is stored at the key (or its write never completed)."""


class IntegrityError(StorageError):
    """The stored bytes do not hash to the sha256 recorded when they were written."""


class StorageUnavailable(StorageError):
    """The backend cannot be reached or is not ready yet (connection refused, timeout, 5xx): worth waiting out."""


@dataclass(frozen=True)
class BlobInfo:
    """What a store knows about a stored blob."""

    key: str
    uri: str
    sha256: str
    size: int


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative key, else raise ``InvalidKey`` saying why.

    Components are non-empty, start with a letter, digit or underscore (so ``..``, ``.`` and hidden
    names are impossible) and use only ``[A-Za-z0-9._=+@-]``; no leading ``/``, no backslash.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("storage key is empty")
    if len(key) > MAX_KEY_LEN:
        raise InvalidKey(f"storage key longer than {MAX_KEY_LEN} characters")
    if key.startswith("/"):
        raise InvalidKey(f"storage key {key!r} is absolute; use a relative key such as 'datasets/x.npz'")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise InvalidKey(f"storage key {key!r} has an empty, '.' or '..' component")
        if not _COMPONENT.fullmatch(part):
            raise InvalidKey(f"storage key {key!r}: component {part!r} must start with a letter, digit or '_' "
                             "and use only letters, digits and . _ = + @ -")
    return key


class ObjectStore(ABC):
    """Atomic, sha256-checked blobs by key. Implementations are thread-safe."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> BlobInfo:
        """Store ``data`` at ``key`` atomically (replacing any blob there) and record its sha256."""

    @abstractmethod
    def head(self, key: str) -> BlobInfo | None:
        """The recorded description of the blob at ``key``, or None when there is none."""

    @abstractmethod
    def _read(self, key: str) -> tuple[bytes, str]:
        """The bytes at ``key`` and the sha256 recorded with them; ``BlobNotFound`` when absent."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob at ``key`` (no error when absent)."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys of the complete blobs whose key starts with ``prefix``, sorted."""

    @abstractmethod
    def uri(self, key: str) -> str:
        """The URI of ``key`` in this store."""

    @abstractmethod
    def key(self, uri: str) -> str:
        """The key a URI names; ``InvalidKey`` when the URI lies outside this store."""

    @abstractmethod
    def check(self) -> None:
        """Raise ``StorageError`` unless the backend is reachable and usable (readiness probe)."""

    def get(self, key: str, expect_sha256: str | None = None) -> bytes:
        """The bytes at ``key``, verified against the recorded sha256 (and ``expect_sha256`` if given)."""
        validate_key(key)
        data, recorded = self._read(key)
        actual = sha256_hex(data)
        if actual != recorded:
            raise IntegrityError(f"{self.uri(key)}: content hashes to {actual[:12]} but {recorded[:12]} was recorded "
                                 "when it was written; the blob is corrupt or was modified outside rsir")
        if expect_sha256 and expect_sha256 != actual:
            raise IntegrityError(f"{self.uri(key)}: sha256 is {actual[:12]}, the request expects "
                                 f"{expect_sha256[:12]}; the blob was replaced since the reference was taken")
        return data

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def get_uri(self, uri: str, expect_sha256: str | None = None) -> bytes:
        return self.get(self.key(uri), expect_sha256)
