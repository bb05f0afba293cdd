"""``/datasets``: upload interaction files, list dataset versions, and read one's lineage."""

from __future__ import annotations

import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from rsir.jsonio import dumps
from services.orchestrator.deps import Authorized, SettingsDep, StoreDep, field_error
from services.orchestrator.schemas import HEX64, DatasetView
from services.orchestrator.store.versions import public
from services.orchestrator.uploads import DATASET_SUFFIXES, UploadRejected, ingest_dataset, receive_capped

router = APIRouter(prefix="/datasets", tags=["datasets"])
Version = Annotated[str, Path(pattern=HEX64.pattern, description="sha256 content hash")]
FILENAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
MAX_LINEAGE = 100


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetView, dependencies=[Authorized],
             responses={200: {"description": "this content was already stored"}, 413: {"description": "too large"},
                        422: {"description": "not a valid dataset"}})
async def upload_dataset(request: Request, response: Response, store: StoreDep, settings: SettingsDep,
                         filename: Annotated[str, Query(pattern=FILENAME, description="e.g. ratings.csv; its suffix "
                                                        f"picks the reader: {', '.join(DATASET_SUFFIXES)}")],
                         name: Annotated[str | None, Query(pattern=FILENAME)] = None,
                         k_core: Annotated[int, Query(ge=0, le=1000, description="log files only")] = 5,
                         ) -> dict[str, Any]:
    """Upload an interaction file as the raw request body (``curl --data-binary @file``).

    It is streamed to a temporary file with a size cap (413), read back a chunk at a time and
    structurally validated by the core in a worker thread (422 names what is wrong, a catalogue over
    ``ORCHESTRATOR_MAX_ITEMS`` included), and stored under its content hash: uploading the same
    content again returns the existing version (200).
    """
    suffix = FilePath(filename).suffix.lower()
    if suffix not in DATASET_SUFFIXES:
        raise field_error(422, ["query", "filename"], f"unsupported suffix {suffix!r}; use one of "
                          f"{', '.join(DATASET_SUFFIXES)}")
    with tempfile.TemporaryDirectory(prefix="rsir-upload-") as tmp:
        path = FilePath(tmp) / f"upload{suffix}"
        await receive_capped(request, path, settings.max_upload_bytes)
        try:
            record, created = await run_in_threadpool(ingest_dataset, store, path, filename,
                                                      name or FilePath(filename).stem, k_core, settings.max_items)
        except UploadRejected as exc:
            raise field_error(422, ["body"], str(exc)) from None
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return public(record)


@router.get("", response_model=list[DatasetView])
def list_datasets(store: StoreDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> list[dict[str, Any]]:
    """Dataset versions, newest first."""
    return [public(record) for record in store.versions.list(limit, offset)]


@router.get("/{version}", response_model=DatasetView)
async def get_dataset(version: Version, store: StoreDep) -> Response:
    """One version with its lineage: parent, run, teacher checkpoint, generation settings, statistics, and
    ``ancestors`` (the chain of parents back to the uploaded or benchmark dataset)."""
    record = await store.versions.get_async(version)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset version {version}")
    ancestors: list[str] = []
    parent = record.get("parent")
    while parent and len(ancestors) < MAX_LINEAGE:
        ancestors.append(parent)
        parent = (await store.versions.get_async(parent) or {}).get("parent")
    return Response(dumps({**public(record), "ancestors": ancestors}), media_type="application/json")
