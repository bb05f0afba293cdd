"""Run state and dataset versions: Redis is the system of record, object storage holds the blobs.

One ``Store`` over one Redis and one object store, split by what it holds:

- ``runs`` (``runs.py``): ``run:<id>``, the run's JSON document, rewritten whole after every stage so
  a reader (or a restarted orchestrator) sees one stage's state or the next's; ``runs`` (ids by
  creation time) and ``runs:status:<status>`` (ids per status, for /metrics); ``run:<id>:progress``
  (the stage in flight) and ``run:<id>:cancel``; the reliable queue ``queue``/``active`` (BLMOVE
  moves an id between them in one command, so a crash never loses a run taken but not finished).
- ``events`` (``events.py``): ``run:<id>:events``, a stream per run, the SSE feed.
- ``versions`` (``versions.py``): ``dataset:<version>`` and ``datasets``, lineage records of
  content-addressed dataset versions (first writer wins, so a repeated stage never makes a second).
- ``checkpoints`` (``checkpoints.py``): ``checkpoint:<sha256>`` and ``checkpoints``, uploaded teachers.

Every key is under ``<prefix>:``. Documents keep the storage URIs of their blobs; what the API
serves of them is ``public`` (no ``uri`` keys).
"""

from __future__ import annotations

import redis
import redis.asyncio

from services.common.storage import ObjectStore
from services.orchestrator.store.checkpoints import Checkpoints
from services.orchestrator.store.events import Events
from services.orchestrator.store.records import FINAL, STATUSES, public
from services.orchestrator.store.runs import Runs
from services.orchestrator.store.versions import Versions

__all__ = ["FINAL", "STATUSES", "Store", "public"]


class Store:
    """The orchestrator's state: ``runs``, ``events``, ``versions`` and ``checkpoints`` (see above)."""

    def __init__(self, client: redis.Redis, objects: ObjectStore, *, prefix: str = "rsir", url: str = ""):
        self.redis, self.objects, self.prefix = client, objects, prefix
        self.url = url  # for the asyncio client of the status reads and the event feed
        self._async: redis.asyncio.Redis | None = None
        self.events = Events(self)
        self.runs = Runs(self)
        self.versions = Versions(self)
        self.checkpoints = Checkpoints(self)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

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
