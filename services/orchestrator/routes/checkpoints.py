"""``/checkpoints``: upload a fixed teacher checkpoint for weak-to-strong runs, and list them."""

from __future__ import annotations

import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from services.orchestrator.deps import Authorized, SettingsDep, StoreDep, field_error
from services.orchestrator.schemas import HEX64, CheckpointView
from services.orchestrator.store import public
from services.orchestrator.uploads import UploadRejected, ingest_checkpoint, receive_capped

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CheckpointView, dependencies=[Authorized],
             responses={413: {"description": "too large"}, 422: {"description": "not an rsir checkpoint"}})
async def upload_checkpoint(request: Request, response: Response, store: StoreDep,
                            settings: SettingsDep) -> dict[str, Any]:
    """Upload an rsir checkpoint as the raw body; use its ``sha256`` as a run's ``teacher.checkpoint``.

    It is loaded (weights only: no pickled code runs) before anything is stored.
    """
    with tempfile.TemporaryDirectory(prefix="rsir-upload-") as tmp:
        path = FilePath(tmp) / "upload.pt"
        await receive_capped(request, path, settings.max_upload_bytes)
        try:
            record, created = await run_in_threadpool(ingest_checkpoint, store, path.read_bytes())
        except UploadRejected as exc:
            raise field_error(422, ["body"], str(exc)) from None
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return public(record)


@router.get("", response_model=list[CheckpointView])
def list_checkpoints(store: StoreDep) -> list[dict[str, Any]]:
    return public(store.checkpoints.list(None))


@router.get("/{sha256}", response_model=CheckpointView)
def get_checkpoint(sha256: Annotated[str, Path(pattern=HEX64.pattern)], store: StoreDep) -> dict[str, Any]:
    record = store.checkpoints.get(sha256)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no uploaded checkpoint {sha256}")
    return public(record)
