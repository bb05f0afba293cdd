"""Object storage: round trip, sha256 tamper detection and key safety, on both backends."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from services.common.storage import (
    BlobNotFound,
    IntegrityError,
    InvalidKey,
    LocalStore,
    StorageError,
    StorageUnavailable,
    open_store,
    validate_key,
)
from services.common.storage.s3 import S3Store


def test_round_trip(store):
    store.check()
    info = store.put("datasets/a.npz", b"hello")
    assert info.size == 5 and len(info.sha256) == 64
    assert store.get("datasets/a.npz") == b"hello"
    assert store.get_uri(info.uri, info.sha256) == b"hello"
    assert store.key(info.uri) == "datasets/a.npz"
    assert store.head("datasets/a.npz") == info
    store.put("datasets/b.npz", b"")
    store.put("other/c", b"x" * 100_000)
    assert store.list("datasets/") == ["datasets/a.npz", "datasets/b.npz"]
    assert store.get("datasets/b.npz") == b""
    store.put("datasets/a.npz", b"replaced")  # overwrite
    assert store.get("datasets/a.npz") == b"replaced"
    store.delete("datasets/a.npz")
    assert not store.exists("datasets/a.npz") and store.head("datasets/a.npz") is None
    with pytest.raises(BlobNotFound, match="no such blob"):
        store.get("datasets/a.npz")


def test_expected_sha_mismatch(store):
    store.put("k", b"one")
    with pytest.raises(IntegrityError, match="expects"):
        store.get("k", expect_sha256="0" * 64)


def test_tampered_local_blob_is_detected(local_store):
    local_store.put("checkpoints/m.pt", b"original bytes")
    (local_store.root / "checkpoints/m.pt").write_bytes(b"tampered bytes")
    with pytest.raises(IntegrityError, match="corrupt or was modified"):
        local_store.get("checkpoints/m.pt")


def test_tampered_s3_object_is_detected(s3_store):
    info = s3_store.put("checkpoints/m.pt", b"original bytes")
    # rewrite the object behind the store's back, keeping the old recorded hash
    s3_store.client.put_object(Bucket=s3_store.bucket, Key=s3_store._object("checkpoints/m.pt"), Body=b"tampered",
                               Metadata={"sha256": info.sha256})
    with pytest.raises(IntegrityError, match="corrupt or was modified"):
        s3_store.get("checkpoints/m.pt")
    s3_store.client.put_object(Bucket=s3_store.bucket, Key=s3_store._object("foreign"), Body=b"no hash")
    with pytest.raises(IntegrityError, match="no sha256 recorded"):
        s3_store.get("foreign")


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a/./b", ".meta/x.json", ".tmp/x",
                                 "a\\b", "a/b/", "sp ace", "x" * 2000])
def test_unsafe_keys_are_refused(store, key):
    with pytest.raises(InvalidKey):
        store.put(key, b"x")
    with pytest.raises(InvalidKey):
        store.get(key)


def test_uris_outside_the_store_are_refused(local_store, tmp_path):
    assert validate_key("datasets/v1.npz") == "datasets/v1.npz"
    outside = tmp_path / "elsewhere" / "x"
    for uri in [outside.as_uri(), local_store.root.as_uri() + "/../x", "s3://runs/x", "http://host/x",
                local_store.root.as_uri() + "-sibling/x"]:
        with pytest.raises(InvalidKey, match=r"not in this service's storage|component"):
            local_store.key(uri)


def test_s3_uris_name_bucket_and_prefix(s3_store):
    uri = s3_store.uri("a/b")
    assert uri == f"s3://{s3_store.bucket}/{s3_store.prefix}/a/b"
    for bad in [f"s3://other/{s3_store.prefix}/a/b", f"s3://{s3_store.bucket}/a/b", "file:///a/b",
                f"s3://{s3_store.bucket}/{s3_store.prefix}/../x"]:
        with pytest.raises(InvalidKey):
            s3_store.key(bad)


def test_local_half_written_blob_is_invisible(local_store):
    """A writer killed before its commit leaves an unreferenced blob or temp file: never a key."""
    (local_store.root / ".blobs" / ("0" * 64 + "-" + "1" * 32)).write_bytes(b"partial")
    (local_store.root / ".tmp/tmpabc").write_bytes(b"partial")
    assert local_store.list() == []
    assert not local_store.exists("generated/shard.npz")
    with pytest.raises(BlobNotFound):
        local_store.get("generated/shard.npz")


def test_local_files_are_browsable_and_plain_files_unverifiable(local_store):
    info = local_store.put("checkpoints/m.pt", b"weights")
    assert (local_store.root / "checkpoints/m.pt").read_bytes() == b"weights"  # the URI path reads the bytes
    assert info.uri == (local_store.root / "checkpoints/m.pt").as_uri()
    (local_store.root / "copied.pt").write_bytes(b"by hand")
    with pytest.raises(IntegrityError, match="no sha256 recorded"):
        local_store.get("copied.pt")
    local_store.put("copied.pt", b"now stored")
    assert local_store.get("copied.pt") == b"now stored"
    local_store.put("checkpoints/m.pt", b"v2")
    local_store.delete("copied.pt")
    assert len(list((local_store.root / ".blobs").iterdir())) == 1  # replaced and deleted blobs are gone


def test_local_concurrent_overwrites_never_expose_a_mix(local_store):
    values = [bytes([i]) * 50_000 for i in range(4)]
    local_store.put("k", values[0])
    stop = threading.Event()

    def writer():
        i = 0
        while not stop.is_set():
            local_store.put("k", values[i % 4])
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(200):
            assert local_store.get("k") in values
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize(("code", "status", "transient"), [
    ("InternalError", 500, True), ("ServiceUnavailable", 503, True), ("SlowDown", 503, True),
    ("AccessDenied", 403, False),
])
def test_server_errors_are_transient_and_client_errors_are_not(s3_store, code, status, transient):
    """A SeaweedFS that is starting up answers 500 InternalError for a while: callers must wait that out
    (StorageUnavailable), while a refusal such as AccessDenied fails at once."""
    from botocore.stub import Stubber

    with Stubber(s3_store.client) as stub:
        stub.add_client_error("get_object", service_error_code=code, http_status_code=status)
        with pytest.raises(StorageError, match=code) as raised:
            s3_store.get("k")
    assert isinstance(raised.value, StorageUnavailable) is transient


def test_open_store_picks_the_backend(tmp_path, s3):
    assert isinstance(open_store(str(tmp_path / "a")), LocalStore)
    assert open_store((tmp_path / "b").as_uri()).root == (tmp_path / "b").resolve()
    store = open_store(f"s3://{s3.bucket}/pre", s3_endpoint=s3.url, s3_access_key=s3.access_key,
                       s3_secret_key=s3.secret_key)
    assert isinstance(store, S3Store) and store.prefix == "pre"
    store.check()
    with pytest.raises(ValueError, match="unknown scheme"):
        open_store("ftp://x/y")


def test_local_root_is_not_escaped_by_symlinks(local_store, tmp_path):
    os.symlink(tmp_path, local_store.root / "link")
    # a key may name a symlink the operator created, but never '..' or an absolute path
    with pytest.raises(InvalidKey):
        local_store.key(Path(local_store.root, "link", "..", "x").as_uri())
