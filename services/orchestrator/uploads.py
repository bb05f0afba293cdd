"""Uploads: read the body with a size cap while it streams, validate it with the core, then store it.

The client's file name only picks the parser (its suffix must be one the core reads) and labels
the dataset; the bytes land in a fresh temporary directory under a fixed name, so no name a client
sends ever becomes a path. Nothing reaches Redis or object storage before the core has read and
validated the whole upload, so a refused upload (413 or 422) stores nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from rsir.checkpoint import CheckpointError, load_checkpoint
from rsir.config import to_dict
from rsir.errors import RsirError
from rsir.sources import load_dataset
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


def ingest_dataset(store: Store, path: Path, filename: str, name: str, k_core: int) -> tuple[dict[str, Any],
                                                                                                   bool]:
    """Parse ``path`` with the core readers and publish it; (record, created)."""
    try:
        dataset = load_dataset(str(path), k_core=k_core)
    except (RsirError, ValueError, OSError) as exc:
        raise UploadRejected(str(exc).replace(str(path), filename)) from None
    except Exception as exc:  # hostile bytes can trip a reader in ways it does not describe (an id past int64)
        raise UploadRejected(f"{filename}: not a readable dataset ({type(exc).__name__})") from None
    dataset = dataclasses.replace(dataset, name=name)
    return store.versions.publish(dataset, {"source": "upload", "parent": None, "filename": filename})


def ingest_checkpoint(store: Store, payload: bytes) -> tuple[dict[str, Any], bool]:
    """Check that ``payload`` rebuilds a model (no pickled code runs), then store it by its sha256."""
    try:
        _, info = load_checkpoint(payload)
    except CheckpointError as exc:
        raise UploadRejected(str(exc)) from None
    record = {"sha256": sha256_hex(payload), "model": to_dict(info.model_config), "num_items": info.num_items,
              "dataset_version": info.dataset_version, "metrics": info.metrics}
    return store.checkpoints.add(record, payload)
