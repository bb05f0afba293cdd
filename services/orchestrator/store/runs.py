"""Run documents, their progress and cancel flags, and the reliable queue of runs to execute."""

from __future__ import annotations

import json
import time
from typing import Any, cast

from rsir.jsonio import dumps
from services.orchestrator.store.records import STATUSES, Records, public_json, text


class Runs(Records):
    kind, index = "run", "runs"

    def create(self, run: dict[str, Any]) -> None:
        """Store a new run and queue it, atomically."""
        with self.redis.pipeline() as pipe:
            pipe.set(self.key(run["id"]), dumps(run))
            pipe.zadd(self.store.key(self.index), {run["id"]: run["created_at"]})
            pipe.sadd(self.store.key("runs:status", run["status"]), run["id"])
            pipe.rpush(self.store.key("queue"), run["id"])
            pipe.execute()
        self.store.events.emit(run["id"], "status", {"status": run["status"]})

    def save(self, run: dict[str, Any]) -> None:
        """Commit a run's document (and its status index) in one transaction."""
        run["updated_at"] = time.time()
        with self.redis.pipeline() as pipe:
            pipe.set(self.key(run["id"]), dumps(run))
            for status in STATUSES:
                (pipe.sadd if status == run["status"] else pipe.srem)(self.store.key("runs:status", status), run["id"])
            pipe.execute()

    def count_by_status(self) -> dict[str, int]:
        with self.redis.pipeline() as pipe:
            for status in STATUSES:
                pipe.scard(self.store.key("runs:status", status))
            return dict(zip(STATUSES, pipe.execute(), strict=True))

    # -- status reads (asyncio, no model validation; storage URIs left out) ---------------------------
    async def get_json(self, run_id: str) -> bytes | None:
        """A run's public document, with ``progress`` merged in while it runs."""
        replies: list[bytes | None] = cast(Any, await self.store.aredis().mget([self.key(run_id),
                                                                                self.key(run_id, "progress")]))
        raw, progress = replies
        if raw is None:
            return None
        run = json.loads(raw)
        if progress is not None and run["status"] == "running":
            run["progress"] = json.loads(progress)
        return public_json(run)

    async def exists_async(self, run_id: str) -> bool:
        return bool(await self.store.aredis().exists(self.key(run_id)))

    async def list_json(self, limit: int, offset: int) -> bytes:
        """A JSON array of public run documents, newest first."""
        client = self.store.aredis()
        ids = await client.zrevrange(self.store.key(self.index), offset, offset + limit - 1)
        docs: list[bytes | None] = cast(Any, await client.mget([self.key(text(i)) for i in ids])) if ids else []
        return public_json([json.loads(d) for d in docs if d is not None])

    # -- progress of the stage in flight -------------------------------------------------------------
    def set_progress(self, run_id: str, progress: dict[str, Any]) -> None:
        self.redis.set(self.key(run_id, "progress"), dumps({**progress, "updated_at": time.time()}))

    def get_progress(self, run_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key(run_id, "progress"))
        return None if raw is None else json.loads(cast(bytes, raw))

    # -- queue and cancellation ---------------------------------------------------------------------
    def claim(self, timeout: float) -> str | None:
        """Take the next queued run (moved to ``active`` atomically); None after ``timeout`` seconds."""
        # BLMOVE takes fractional seconds and redis-py sends the float as it is; its stub says int
        got = self.redis.blmove(self.store.key("queue"), self.store.key("active"), timeout,  # type: ignore[arg-type]
                                "LEFT", "RIGHT")
        return None if got is None else text(got)

    def release(self, run_id: str) -> None:
        self.redis.lrem(self.store.key("active"), 0, run_id)

    def requeue_active(self) -> list[str]:
        """Put runs a previous process had taken back at the head of the queue, oldest first."""
        moved = []
        while (got := self.redis.lmove(self.store.key("active"), self.store.key("queue"), "RIGHT", "LEFT")) is not None:
            moved.append(text(got))
        return moved[::-1]

    def dequeue(self, run_id: str) -> bool:
        """Remove a run that no worker has taken yet; False when it was not waiting."""
        return bool(self.redis.lrem(self.store.key("queue"), 0, run_id))

    def queue_length(self) -> int:
        return int(cast(int, self.redis.llen(self.store.key("queue"))))

    def request_cancel(self, run_id: str) -> None:
        self.redis.set(self.key(run_id, "cancel"), "1")

    def cancel_requested(self, run_id: str) -> bool:
        return bool(self.redis.exists(self.key(run_id, "cancel")))
