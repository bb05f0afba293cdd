"""Each run's event stream (``<prefix>:run:<id>:events``): what the SSE feed and the dashboard follow."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, cast

from rsir.jsonio import dumps
from services.orchestrator.store.records import text

if TYPE_CHECKING:
    from services.orchestrator.store import Store

MAXLEN = 5000  # events kept per run (approximately: Redis trims whole nodes)


class Events:
    def __init__(self, store: Store):
        self.store, self.redis = store, store.redis

    def key(self, run_id: str) -> str:
        return self.store.key("run", run_id, "events")

    def emit(self, run_id: str, kind: str, data: dict[str, Any]) -> str:
        fields = cast(dict[Any, Any], {"type": kind, "data": dumps({**data, "time": time.time()})})
        return text(self.redis.xadd(self.key(run_id), fields, maxlen=MAXLEN, approximate=True))

    def range(self, run_id: str, after: str = "-", count: int = 1000) -> list[tuple[str, str, dict[str, Any]]]:
        """Events after id ``after`` (exclusive; "-" for all): (id, type, data)."""
        start = "-" if after == "-" else f"({after}"
        entries: list[Any] = cast(Any, self.redis.xrange(self.key(run_id), start, "+", count=count))
        return [(text(i), text(f[b"type"]), json.loads(f[b"data"])) for i, f in entries]

    async def read(self, run_id: str, after: str, block_ms: int, count: int = 200) -> list[tuple[str, str, str]]:
        """Events after stream id ``after``, waiting up to ``block_ms`` for one: (id, type, JSON data)."""
        got = await self.store.aredis().xread({self.key(run_id): after}, count=count, block=block_ms)
        entries: list[Any] = cast(Any, got)[0][1] if got else []
        return [(text(i), text(f[b"type"]), text(f[b"data"])) for i, f in entries]
