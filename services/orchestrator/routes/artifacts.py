"""``/artifacts``: downloads of dataset versions, checkpoints and run reports.

Every blob is found through a record (a dataset version, a run's iteration), never through a path
or key the client spells: the path parameters are validated ids, and the storage keys come from
Redis. Reads are sha256-checked by the object store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from rsir.datasets import SequenceDataset
from services.orchestrator.deps import StoreDep
from services.orchestrator.schemas import HEX64, RUN_ID

router = APIRouter(prefix="/artifacts", tags=["artifacts"])
Version = Annotated[str, Path(pattern=HEX64.pattern)]
RunId = Annotated[str, Path(pattern=RUN_ID)]


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _text_lines(dataset: SequenceDataset, chunk: int = 2048) -> Iterator[bytes]:
    """The one-user-per-line format (``user item item ...``); pseudo-users carry ids above the real ones."""
    for start in range(0, len(dataset), chunk):
        yield "".join(f"{int(dataset.users[i])} {' '.join(map(str, dataset.sequence(i).tolist()))}\n"
                      for i in range(start, min(start + chunk, len(dataset)))).encode()


@router.get("/datasets/{version}", responses={200: {"content": {"text/plain": {}, "application/octet-stream": {}}}})
async def download_dataset(version: Version, store: StoreDep,
                           format: Annotated[Literal["txt", "npz"], Query()] = "txt") -> Response:
    """A dataset version as text (one user per line; for people and other tools) or as the lossless
    ``.npz`` the services exchange (it also records which users are real)."""
    if await run_in_threadpool(store.versions.get, version) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no dataset version {version}")
    if format == "npz":
        payload = await run_in_threadpool(store.objects.get, f"datasets/{version}.npz")
        return Response(payload, media_type="application/octet-stream", headers=_attachment(f"{version}.npz"))
    dataset = await run_in_threadpool(store.versions.load, version)
    return StreamingResponse(_text_lines(dataset), media_type="text/plain", headers=_attachment(f"{version}.txt"))


@router.get("/runs/{run_id}/checkpoints/{iteration}", responses={200: {"content": {"application/octet-stream": {}}}})
async def download_checkpoint(run_id: RunId, iteration: Annotated[int, Path(ge=0, le=100)], store: StoreDep,
                              role: Annotated[Literal["student", "teacher"], Query()] = "student") -> Response:
    """The checkpoint of iteration ``iteration``'s student (or its separately trained teacher)."""
    run = await run_in_threadpool(store.runs.get, run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    rows = run["iterations"]
    outcome = rows[iteration].get(role) if iteration < len(rows) else None
    if not outcome:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} has no {role} checkpoint for iteration "
                            f"{iteration} (yet)")
    ref = outcome["checkpoint"]
    payload = await run_in_threadpool(store.objects.get_uri, ref["uri"], ref["sha256"])
    return Response(payload, media_type="application/octet-stream",
                    headers=_attachment(f"{run_id}-{iteration}-{role}.pt"))


@router.get("/runs/{run_id}/report")
async def download_report(run_id: RunId, store: StoreDep) -> Response:
    """The run report (JSON): spec, per-iteration metrics and datasets, selection, significance."""
    run = await run_in_threadpool(store.runs.get, run_id)
    if run is None or not run.get("report"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} has no report (yet)")
    payload = await run_in_threadpool(store.objects.get_uri, run["report"]["uri"], run["report"]["sha256"])
    return Response(payload, media_type="application/json", headers=_attachment(f"{run_id}-report.json"))
