"""JSON documents in Redis under ``<prefix>:<kind>:<id>``, indexed by creation time: what runs,
dataset versions and uploaded checkpoints have in common."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from services.orchestrator.store import Store

STATUSES = ("queued", "running", "completed", "failed", "cancelled")
FINAL = frozenset({"completed", "failed", "cancelled"})


def public(value: Any) -> Any:
    """``value`` without its ``uri`` keys, at any depth: where a blob lies on the server (a path, a
    bucket) is not for readers; its sha256 and the download routes are."""
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items() if k != "uri"}
    if isinstance(value, list):
        return [public(v) for v in value]
    return value


def public_json(value: Any) -> bytes:
    """``public(value)`` as compact JSON (``value`` read from stored strict JSON: no NaN to handle)."""
    return json.dumps(public(value), separators=(",", ":"), allow_nan=False).encode()


def text(value: Any) -> str:
    """A Redis reply as text: this client returns bytes (redis-py types replies as bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


class Records:
    """Documents of one ``kind`` with their index (a sorted set of ids by creation time)."""

    kind = ""
    index = ""

    def __init__(self, store: Store):
        self.store, self.redis = store, store.redis

    def key(self, record_id: str, *parts: str) -> str:
        return self.store.key(self.kind, record_id, *parts)

    def get(self, record_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.key(record_id))
        return None if raw is None else json.loads(cast(bytes, raw))

    async def get_async(self, record_id: str) -> dict[str, Any] | None:
        raw = await self.store.aredis().get(self.key(record_id))
        return None if raw is None else json.loads(raw)

    def ids(self, limit: int | None, offset: int = 0) -> list[str]:
        """Ids, newest first (``limit`` None: all)."""
        end = -1 if limit is None else offset + limit - 1
        return [text(i) for i in cast(list[Any], self.redis.zrevrange(self.store.key(self.index), offset, end))]

    def list(self, limit: int | None = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Documents, newest first (``limit`` None: all)."""
        ids = self.ids(limit, offset)
        docs = cast(list[Any], self.redis.mget([self.key(i) for i in ids])) if ids else []
        return [json.loads(d) for d in docs if d is not None]

    def count(self) -> int:
        return int(cast(int, self.redis.zcard(self.store.key(self.index))))
