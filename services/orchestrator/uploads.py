"""Uploads: stream the body to a temporary file with a size cap, validate it with the core, then store it.

The client's file name only picks the parser (its suffix must be one the core reads) and labels
the dataset; the bytes land in a fresh temporary directory under a fixed name, so no name a client
sends ever becomes a path. The body is never held in memory: it is written chunk by chunk as it
arrives, and the core reads the file back a chunk at a time in a worker thread, so the event loop
(and ``/healthz``) keeps answering. Nothing reaches Redis or object storage before the core has read
and structurally validated the whole upload (``rsir.validation``), so a refused upload (413 or 422)
stores nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
from pathlib import Path
from typing import Any

import pyarrow  # type: ignore[import-untyped]  # no stubs; the core's log reader allocates through it
from fastapi import HTTPException, Request

from rsir.checkpoint import CheckpointError, load_checkpoint
from rsir.config import to_dict
from rsir.datasets import SequenceDataset
from rsir.errors import RsirError
from services.common.storage import sha256_hex
from services.orchestrator.store import Store

DATASET_SUFFIXES = (".txt", ".csv", ".tsv", ".parquet", ".inter", ".npz")


class UploadRejected(Exception):
    """The upload is not a valid dataset or checkpoint; the message says why (no server paths)."""


async def receive_capped(request: Request, path: Path, limit: int) -> int:
    """Write the request body to ``path``; 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    too_large = HTTPException(413, f"upload larger than the {limit} byte limit (ORCHESTRATOR_MAX_UPLOAD_MB)")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large  # refused before reading a byte
    size = 0
    with path.open("wb") as out:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            out.write(chunk)
    if size == 0:
        raise HTTPException(422, "empty upload: send the file as the request body")
    return size


def ingest_dataset(store: Store, path: Path, filename: str, name: str, k_core: int,
                   max_items: int) -> tuple[dict[str, Any], bool]:
    """Parse and validate ``path`` with the core readers (a catalogue of at most ``max_items``), then
    publish it; (record, created). Runs in a worker thread: it reads the file a chunk at a time."""
    try:
        dataset = _read(path, filename, name, k_core, max_items)
        return store.versions.publish(dataset, {"source": "upload", "parent": None, "filename": filename})
    finally:
        release_memory()


def _read(path: Path, filename: str, name: str, k_core: int, max_items: int) -> SequenceDataset:
    try:
        return SequenceDataset.read(path, k_core=k_core, max_items=max_items, name=name)
    except (RsirError, ValueError, OSError) as exc:
        message = str(exc).replace(str(path), filename).replace("max_items setting", "ORCHESTRATOR_MAX_ITEMS")
        raise UploadRejected(message) from None
    except Exception as exc:  # hostile bytes can trip a reader in ways it does not describe (an id past int64)
        raise UploadRejected(f"{filename}: not a readable dataset ({type(exc).__name__})") from None


def release_memory() -> None:
    """Hand the memory a parse freed back to the OS: Arrow's pool and glibc's heap keep freed pages for
    reuse, which left a long-lived orchestrator holding an upload's peak (hundreds of MB) afterwards."""
    pyarrow.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def ingest_checkpoint(store: Store, payload: bytes) -> tuple[dict[str, Any], bool]:
    """Check that ``payload`` rebuilds a model (no pickled code runs), then store it by its sha256."""
    try:
        _, info = load_checkpoint(payload)
    except CheckpointError as exc:
        raise UploadRejected(str(exc)) from None
    record = {"sha256": sha256_hex(payload), "model": to_dict(info.model_config), "num_items": info.num_items,
              "dataset_version": info.dataset_version, "metrics": info.metrics}
    return store.checkpoints.add(record, payload)
