"""Run state and dataset versions: Redis is the system of record, object storage holds the blobs.

Keys, all under ``<prefix>:``:

- ``run:<id>``: the run's JSON document (spec, status, stage, iterations). It is rewritten whole
  after every stage, so a reader (or a restarted orchestrator) sees one stage's state or the next's.
- ``run:<id>:progress`` (the stage in flight: epoch, shard counts), ``run:<id>:cancel`` (a cancel
  was asked), ``run:<id>:events`` (a stream: the SSE feed).
- ``runs`` (ids by creation time), ``runs:status:<status>`` (ids per status, for /metrics).
- ``queue`` and ``active``: a reliable queue. A worker moves an id from ``queue`` to ``active`` in
  one command (BLMOVE), so a crash can never lose a run that was taken but not finished.
- ``dataset:<version>`` and ``datasets``: lineage records of content-addressed dataset versions.
  Publishing the same content twice finds the record there (first writer wins), so a stage that is
  repeated after a crash never makes a second version.
- ``checkpoint:<sha256>`` and ``checkpoints``: uploaded teacher checkpoints.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis
import redis.asyncio

from rsir.analysis import describe
from rsir.datasets import SequenceDataset
from rsir.jsonio import dumps
from services.common.artifacts import DatasetRef, fetch_dataset
from services.common.storage import ObjectStore

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
FINAL = frozenset({"completed", "failed", "cancelled"})
EVENTS_MAXLEN = 5000


def _text(value: Any) -> str:
    """A Redis reply as text: this client returns bytes (redis-py types replies as bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class DatasetStore:
    """Runs, events, dataset versions and uploaded checkpoints over one Redis and one object store."""

    def __init__(self, client: redis.Redis, objects: ObjectStore, *, prefix: str = "rsir", url: str = ""):
        self.redis, self.objects, self.prefix = client, objects, prefix
        self.url = url  # for the asyncio client of the status reads and the event feed
        self._async: redis.asyncio.Redis | None = None

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- runs ---------------------------------------------------------------------------------------
    def create_run(self, run: dict[str, Any]) -> None:
        """Store a new run and queue it, atomically."""
        with self.redis.pipeline() as pipe:
            pipe.set(self.key("run", run["id"]), dumps(run))
            pipe.zadd(self.key("runs"), {run["id"]: run["created_at"]})
            pipe.sadd(self.key("runs:status", run["status"]), run["id"])
            pipe.rpush(self.key("queue"), run["id"])
            pipe.execute()
        self.emit(run["id"], "status", {"status": run["status"]})

    def save_run(self, run: dict[str, Any]) -> None:
        """Commit a run's document (and its status index) in one transaction."""
        run["updated_at"] = time.time()
        with self.redis.pipeline() as pipe:
            pipe.set(self.key("run", run["id"]), dumps(run))
            for status in STATUSES:
                (pipe.sadd if status == run["status"] else pipe.srem)(self.key("runs:status", status), run["id"])
            pipe.execute()

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("run", run_id))
        return None if raw is None else json.loads(raw)

    def list_runs(self, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        ids = self.redis.zrevrange(self.key("runs"), offset, offset + limit - 1)
        if not ids:
            return []
        docs = self.redis.mget([self.key("run", _text(i)) for i in ids])
        return [json.loads(d) for d in docs if d is not None]

    # -- status reads (asyncio, raw JSON) ------------------------------------------------------------
    # The status endpoints answer from the event loop without a thread hop, and pass the stored
    # JSON through as it is: no parse, no model validation, no re-serialisation per request.
    def aredis(self) -> redis.asyncio.Redis:
        """The asyncio client on the same server, opened on first use in the running event loop."""
        if self._async is None:
            if not self.url:
                raise RuntimeError("asyncio reads need the store's Redis URL")
            self._async = redis.asyncio.Redis.from_url(self.url, health_check_interval=30)
        return self._async

    async def aclose(self) -> None:
        if self._async is not None:
            await self._async.aclose()
            self._async = None

    async def run_json(self, run_id: str) -> bytes | None:
        """A run's document, with ``progress`` merged in while it runs."""
        replies: list[bytes | None] = cast(Any, await self.aredis().mget([self.key("run", run_id),
                                                                         self.key("run", run_id, "progress")]))
        raw, progress = replies
        if raw is None or progress is None:
            return raw
        run = json.loads(raw)
        if run["status"] != "running":
            return raw
        run["progress"] = json.loads(progress)
        return dumps(run).encode()

    async def run_exists(self, run_id: str) -> bool:
        return bool(await self.aredis().exists(self.key("run", run_id)))

    async def runs_json(self, limit: int, offset: int) -> bytes:
        """A JSON array of run documents, newest first."""
        client = self.aredis()
        ids = await client.zrevrange(self.key("runs"), offset, offset + limit - 1)
        docs: list[bytes | None] = cast(Any, await client.mget([self.key("run", _text(i)) for i in ids])) if ids else []
        return b"[" + b",".join(d for d in docs if d is not None) + b"]"

    async def dataset_async(self, version: str) -> dict[str, Any] | None:
        raw = await self.aredis().get(self.key("dataset", version))
        return None if raw is None else json.loads(raw)

    async def read_events(self, run_id: str, after: str, block_ms: int,
                          count: int = 200) -> list[tuple[str, str, str]]:
        """Events after stream id ``after``, waiting up to ``block_ms`` for one: (id, type, JSON data)."""
        got = await self.aredis().xread({self.events_key(run_id): after}, count=count, block=block_ms)
        entries: list[Any] = cast(Any, got)[0][1] if got else []
        return [(_text(i), _text(f[b"type"]), _text(f[b"data"])) for i, f in entries]

    def count_runs(self) -> dict[str, int]:
        with self.redis.pipeline() as pipe:
            for status in STATUSES:
                pipe.scard(self.key("runs:status", status))
            return dict(zip(STATUSES, pipe.execute(), strict=True))

    def set_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        self.redis.set(self.key("run", run_id, "progress"), dumps({**progress, "updated_at": time.time()}))

    def get_progress(self, run_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("run", run_id, "progress"))
        return None if raw is None else json.loads(raw)

    # -- queue and cancellation ---------------------------------------------------------------------
    def claim(self, timeout: float) -> str | None:
        """Take the next queued run (moved to ``active`` atomically); None after ``timeout`` seconds."""
        # BLMOVE takes fractional seconds and redis-py sends the float as it is; its stub says int
        got = self.redis.blmove(self.key("queue"), self.key("active"), timeout, "LEFT", "RIGHT")  # type: ignore[arg-type]
        return None if got is None else _text(got)

    def release(self, run_id: str) -> None:
        self.redis.lrem(self.key("active"), 0, run_id)

    def requeue_active(self) -> list[str]:
        """Put runs a previous process had taken back at the head of the queue, oldest first."""
        moved = []
        while (got := self.redis.lmove(self.key("active"), self.key("queue"), "RIGHT", "LEFT")) is not None:
            moved.append(_text(got))
        return moved[::-1]

    def dequeue(self, run_id: str) -> bool:
        """Remove a run that no worker has taken yet; False when it was not waiting."""
        return bool(self.redis.lrem(self.key("queue"), 0, run_id))

    def queue_length(self) -> int:
        return int(self.redis.llen(self.key("queue")))

    def request_cancel(self, run_id: str) -> None:
        self.redis.set(self.key("run", run_id, "cancel"), "1")

    def cancel_requested(self, run_id: str) -> bool:
        return bool(self.redis.exists(self.key("run", run_id, "cancel")))

    # -- events -------------------------------------------------------------------------------------
    def events_key(self, run_id: str) -> str:
        return self.key("run", run_id, "events")

    def emit(self, run_id: str, kind: str, data: dict[str, Any]) -> str:
        entry = {"type": kind, "data": dumps({**data, "time": time.time()})}
        fields = cast(dict[Any, Any], entry)
        return _text(self.redis.xadd(self.events_key(run_id), fields, maxlen=EVENTS_MAXLEN, approximate=True))

    def events(self, run_id: str, after: str = "-", count: int = 1000) -> list[tuple[str, str, dict[str, Any]]]:
        """Events after id ``after`` (exclusive; "-" for all): (id, type, data)."""
        start = "-" if after == "-" else f"({after}"
        entries: list[Any] = cast(Any, self.redis.xrange(self.events_key(run_id), start, "+", count=count))
        return [(_text(i), _text(f[b"type"]), json.loads(f[b"data"])) for i, f in entries]

    # -- dataset versions ---------------------------------------------------------------------------
    def publish_dataset(self, dataset: SequenceDataset, lineage: dict[str, Any],
                        stats: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Store ``dataset`` under its content address and record its lineage; (record, created).

        The blob is written before the record, so a record always points at a stored blob; a crash
        in between leaves a blob that the repeated stage finds and reuses.
        """
        existing = self.get_dataset(dataset.version)
        if existing is not None:
            return existing, False
        key = f"datasets/{dataset.version}.npz"
        head = self.objects.head(key)
        if head is None:
            head = self.objects.put(key, dataset.to_bytes())
        record = {"version": dataset.version, "name": dataset.name, "uri": head.uri, "sha256": head.sha256,
                  "size": head.size, "created_at": time.time(),
                  "stats": stats if stats is not None else describe(dataset), **lineage}
        if not self.redis.set(self.key("dataset", dataset.version), dumps(record), nx=True):
            return self.get_dataset(dataset.version) or record, False  # another writer won the race
        self.redis.zadd(self.key("datasets"), {dataset.version: record["created_at"]})
        return record, True

    def get_dataset(self, version: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("dataset", version))
        return None if raw is None else json.loads(raw)

    def list_datasets(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        versions = self.redis.zrevrange(self.key("datasets"), offset, offset + limit - 1)
        docs = self.redis.mget([self.key("dataset", _text(v)) for v in versions]) if versions else []
        return [json.loads(d) for d in docs if d is not None]

    def count_datasets(self) -> int:
        return int(self.redis.zcard(self.key("datasets")))

    def dataset_ref(self, version: str) -> DatasetRef:
        record = self.get_dataset(version)
        if record is None:
            raise LookupError(f"no dataset version {version}")
        return DatasetRef(record["uri"], version)

    def load_dataset(self, version: str) -> SequenceDataset:
        return fetch_dataset(self.objects, self.dataset_ref(version))

    # -- uploaded checkpoints -----------------------------------------------------------------------
    def add_checkpoint(self, record: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bool]:
        existing = self.get_checkpoint(record["sha256"])
        if existing is not None:
            return existing, False
        info = self.objects.put(f"checkpoints/uploaded/{record['sha256']}.pt", payload)
        record = {**record, "uri": info.uri, "size": info.size, "created_at": time.time()}
        self.redis.set(self.key("checkpoint", record["sha256"]), dumps(record))
        self.redis.zadd(self.key("checkpoints"), {record["sha256"]: record["created_at"]})
        return record, True

    def get_checkpoint(self, sha256: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key("checkpoint", sha256))
        return None if raw is None else json.loads(raw)

    def list_checkpoints(self) -> list[dict[str, Any]]:
        shas = self.redis.zrevrange(self.key("checkpoints"), 0, -1)
        docs = self.redis.mget([self.key("checkpoint", _text(s)) for s in shas]) if shas else []
        return [json.loads(d) for d in docs if d is not None]
