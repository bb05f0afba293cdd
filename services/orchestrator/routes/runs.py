"""``/runs``: submit, list, inspect and cancel runs, and follow one live over server-sent events."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request, status
from fastapi.responses import Response, StreamingResponse

from rsir.sources import BENCHMARKS, data_dir
from services.orchestrator.deps import Authorized, DriverDep, SettingsDep, StoreDep, field_error
from services.orchestrator.devices import check_devices
from services.orchestrator.schemas import HEX64, RUN_ID, RunCreated, RunSpec, RunView
from services.orchestrator.store import FINAL, Store, public

router = APIRouter(prefix="/runs", tags=["runs"])
RunId = Annotated[str, Path(pattern=RUN_ID, description="run id, e.g. r0123456789ab")]
EVENT_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
BLOCK_MS = 2000  # how long one read waits for events before a keep-alive comment (under redis-py's 5 s read timeout)
JSON = "application/json"


def _check_inputs(spec: RunSpec, store: Store, settings: Any) -> None:
    """What the spec alone cannot tell: the dataset and teacher checkpoint exist and fit together."""
    record = None
    if HEX64.fullmatch(spec.dataset):
        record = store.versions.get(spec.dataset)
        if record is None:
            raise field_error(422, ["body", "dataset"], f"no dataset version {spec.dataset}; upload one with "
                              "POST /datasets")
    elif spec.dataset in BENCHMARKS:
        root = data_dir(settings.data_dir)
        if root is None or not (root / BENCHMARKS[spec.dataset].file).is_file():
            raise field_error(422, ["body", "dataset"], f"benchmark {spec.dataset!r} is not available here "
                              "(set ORCHESTRATOR_DATA_DIR or RSIR_DATA_DIR), or upload it with POST /datasets")
    if spec.teacher is not None and spec.teacher.checkpoint is not None:
        loc = ["body", "teacher", "checkpoint"]
        checkpoint = store.checkpoints.get(spec.teacher.checkpoint)
        if checkpoint is None:
            raise field_error(422, loc, "no uploaded checkpoint with this sha256; upload it with POST /checkpoints")
        if record is not None and checkpoint["num_items"] != record["stats"]["items"]:
            raise field_error(422, loc, f"the checkpoint scores {checkpoint['num_items']} items, the dataset has "
                              f"{record['stats']['items']}")
        if spec.resolve()[1].generation.max_len > checkpoint["model"]["max_len"]:
            raise field_error(422, ["body", "generation", "max_len"], "exceeds the teacher checkpoint's max_len "
                              f"({checkpoint['model']['max_len']})")


def _stream_id(value: str) -> bool:
    """A Redis stream id (``<ms>-<seq>``, each part below 2**64), which XREAD accepts."""
    return bool(EVENT_ID.fullmatch(value)) and all(int(part) < 2**64 for part in value.split("-"))


def _view(store: Store, run_id: str) -> dict[str, Any]:
    run = store.runs.get(run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    if run["status"] == "running":
        run["progress"] = store.runs.get_progress(run_id)
    return run


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RunCreated, dependencies=[Authorized])
def create_run(spec: RunSpec, store: StoreDep, driver: DriverDep, settings: SettingsDep) -> RunCreated:
    """Queue a run; it starts when a driver worker is free (``ORCHESTRATOR_MAX_CONCURRENT_RUNS``)."""
    _check_inputs(spec, store, settings)
    check_devices(spec, driver.trainer)
    run = driver.submit(spec)
    return RunCreated(id=run["id"], status=run["status"], url=f"/runs/{run['id']}", events=f"/runs/{run['id']}/events")


@router.get("", response_model=list[RunView])
async def list_runs(store: StoreDep, limit: Annotated[int, Query(ge=1, le=500)] = 50,
                    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> Response:
    """Runs, newest first."""
    return Response(await store.runs.list_json(limit, offset), media_type=JSON)


@router.get("/{run_id}", response_model=RunView)
async def get_run(run_id: RunId, store: StoreDep) -> Response:
    """Stage, iteration, live progress, metrics per iteration, generation statistics and timings."""
    raw = await store.runs.get_json(run_id)
    if raw is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    return Response(raw, media_type=JSON)


@router.post("/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED, response_model=RunView,
             dependencies=[Authorized])
def cancel_run(run_id: RunId, store: StoreDep, driver: DriverDep) -> dict[str, Any]:
    """Cancel a run: a queued one at once, a running one within one epoch or generation batch."""
    run = _view(store, run_id)
    if run["status"] in FINAL:
        raise HTTPException(status.HTTP_409_CONFLICT, f"run {run_id} is already {run['status']}")
    return public(driver.cancel(run))


@router.get("/{run_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
async def run_events(run_id: RunId, request: Request, store: StoreDep,
                     last_event_id: Annotated[str | None, Header()] = None,
                     after: Annotated[str | None, Query(pattern=EVENT_ID.pattern)] = None) -> StreamingResponse:
    """Live events (``status``, ``stage``, ``epoch``, ``shard``, ``dataset``, ``iteration``, ``finished``).

    Each carries its stream id, so a reconnecting ``EventSource`` resumes after the last one it saw;
    the stream ends after ``finished``.
    """
    if not await store.runs.exists_async(run_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    if after is not None and not _stream_id(after):
        raise field_error(422, ["query", "after"], "not a stream id: both parts must be below 2**64")
    start = last_event_id if last_event_id and _stream_id(last_event_id) else after or "0-0"

    async def stream() -> AsyncIterator[str]:
        last = start
        yield "retry: 2000\n\n"
        while not await request.is_disconnected():
            events = await store.events.read(run_id, last, BLOCK_MS)
            if not events:
                yield ": keep-alive\n\n"
                continue
            for last, kind, data in events:
                yield f"id: {last}\nevent: {kind}\ndata: {data}\n\n"
                if kind == "finished":
                    return

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
