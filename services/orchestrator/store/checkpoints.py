"""Uploaded teacher checkpoints: the file in object storage, its description in Redis."""

from __future__ import annotations

import time
from typing import Any

from rsir.jsonio import dumps
from services.orchestrator.store.records import Records


class Checkpoints(Records):
    kind, index = "checkpoint", "checkpoints"

    def add(self, record: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bool]:
        """Store an uploaded checkpoint once (by its sha256); (record, created)."""
        existing = self.get(record["sha256"])
        if existing is not None:
            return existing, False
        info = self.store.objects.put(f"checkpoints/uploaded/{record['sha256']}.pt", payload)
        record = {**record, "uri": info.uri, "size": info.size, "created_at": time.time()}
        self.redis.set(self.key(record["sha256"]), dumps(record))
        self.redis.zadd(self.store.key(self.index), {record["sha256"]: record["created_at"]})
        return record, True
