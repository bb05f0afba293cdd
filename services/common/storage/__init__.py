"""Object storage behind one small interface: a local directory or an S3-compatible server.

``open_store(url)`` picks the backend from a URL: ``file:///abs/dir`` or a plain path → local
directory; ``s3://bucket[/prefix]`` → S3 (endpoint and credentials passed in, or boto3's defaults).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.common.storage.base import (
    BlobInfo,
    BlobNotFound,
    IntegrityError,
    InvalidKey,
    ObjectStore,
    StorageError,
    StorageUnavailable,
    sha256_hex,
    validate_key,
)
from services.common.storage.local import LocalStore


def open_store(url: str, *, s3_endpoint: str | None = None, s3_access_key: str | None = None,
               s3_secret_key: str | None = None, s3_region: str | None = None) -> ObjectStore:
    """The store a storage URL names; ``ValueError`` for an unknown scheme."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        from services.common.storage.s3 import S3Store

        if not parts.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket; use s3://bucket[/prefix]")
        return S3Store(parts.netloc, parts.path, endpoint_url=s3_endpoint, access_key=s3_access_key,
                       secret_key=s3_secret_key, region=s3_region)
    if parts.scheme == "file":
        return LocalStore(unquote(parts.path))
    if parts.scheme == "":
        return LocalStore(Path(url))
    raise ValueError(f"storage URL {url!r}: unknown scheme {parts.scheme!r}; use file:///dir, a path or s3://bucket")


__all__ = ["BlobInfo", "BlobNotFound", "IntegrityError", "InvalidKey", "LocalStore", "ObjectStore", "StorageError",
           "StorageUnavailable", "open_store", "sha256_hex", "validate_key"]
