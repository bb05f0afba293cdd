"""One generation pass over all generator replicas: users sharded, failed shards retried elsewhere.

Shard i of n is first sent to replica ``i mod R`` and, when that call fails in a way another replica
could fix (unreachable, busy, stream broken off), to the next replicas in turn. Every call names an
``output_key``: the generator stores the complete shard result there, once, after its last batch, so
the stored blobs are the pass's durable output. A restarted orchestrator skips the shards already
stored, and ``load_shards`` reads them back in shard order for the merge (which sorts by row id, so
the merged dataset does not depend on which replica ran which shard).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from rsir.config import GenerationConfig
from rsir.generation import GeneratedBatch
from services.common.artifacts import BlobRef, DatasetRef
from services.common.storage import ObjectStore
from services.generator.client import GeneratorClient, IncompleteStream
from services.generator.results import read_result

logger = logging.getLogger(__name__)
# errors another replica (or a later try) may not repeat; anything else fails the pass
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                       grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
                       grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


class Interrupted(Exception):
    """The pass was stopped from outside (run cancelled, orchestrator shutting down)."""


@dataclass
class ShardOutcome:
    index: int
    address: str | None  # None: found already stored
    attempts: int
    seconds: float
    stats: dict[str, int] = field(default_factory=dict)


def shard_keys(run_id: str, iteration: int, count: int) -> list[str]:
    return [f"generated/{run_id}/{iteration}/shard-{i}-of-{count}.npz" for i in range(count)]


def run_shards(replicas: Sequence[tuple[str, GeneratorClient]], objects: ObjectStore, checkpoint: BlobRef,
               dataset: DatasetRef, config: GenerationConfig, keys: Sequence[str], *,
               should_stop: Callable[[], bool], on_progress: Callable[[int, dict[str, Any]], None],
               timeout: float, busy_wait: float, rounds: int = 3) -> list[ShardOutcome]:
    """Make sure every shard's result is stored under ``keys[i]``; the outcomes in shard order."""
    count = len(keys)
    stop = threading.Event()

    def stopped() -> bool:
        return stop.is_set() or should_stop()

    def stored(index: int, address: str | None, attempts: int, t0: float) -> ShardOutcome | None:
        """The shard's outcome if its result is already stored (by an earlier process or attempt)."""
        if objects.head(keys[index]) is None:
            return None
        stats = read_result(objects.get(keys[index]))[0].stats.to_dict()
        on_progress(index, {**stats, "done": True, "address": address})
        return ShardOutcome(index, address, attempts, time.perf_counter() - t0, stats)

    def one(index: int) -> ShardOutcome:
        t0 = time.perf_counter()
        if (done := stored(index, None, 0, t0)) is not None:
            return done
        attempts, deadline = 0, time.monotonic() + busy_wait
        while True:
            for offset in range(len(replicas)):
                address, client = replicas[(index + offset) % len(replicas)]
                if stopped():
                    raise Interrupted
                attempts += 1

                def report(stats: dict[str, Any], address: str = address) -> None:
                    on_progress(index, {**stats, "address": address})

                try:
                    stats = _stream_shard(client, checkpoint, dataset, config, (index, count), keys[index],
                                          timeout, stopped, report)
                except (grpc.RpcError, IncompleteStream) as exc:
                    code = exc.code() if isinstance(exc, grpc.RpcError) else None
                    if stopped():
                        raise Interrupted from None
                    if code is not None and code not in RETRYABLE:
                        raise
                    if (done := stored(index, address, attempts, t0)) is not None:
                        return done  # the replica stored the result before the stream broke
                    logger.warning("shard %d/%d on %s failed (%s); trying another replica", index, count, address,
                                   code.name if code else exc)
                    continue
                on_progress(index, {**stats, "done": True, "address": address})
                return ShardOutcome(index, address, attempts, time.perf_counter() - t0, stats)
            if attempts >= rounds * len(replicas) and time.monotonic() > deadline:
                raise RuntimeError(f"shard {index}/{count}: every generator replica failed {attempts} times")
            time.sleep(min(5.0, 0.5 * attempts))  # all replicas busy or down: wait, then go round again

    with ThreadPoolExecutor(max_workers=min(count, 4 * len(replicas)), thread_name_prefix="shard") as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        try:
            return [f.result() for f in futures]
        finally:
            stop.set()  # one shard failed: stop the others at their next batch


def _stream_shard(client: GeneratorClient, checkpoint: BlobRef, dataset: DatasetRef, config: GenerationConfig,
                  shard: tuple[int, int], key: str, timeout: float, stopped: Callable[[], bool],
                  report: Callable[[dict[str, Any]], None]) -> dict[str, int]:
    stream = client.generate(checkpoint, dataset, config, shard=shard, output_key=key, timeout=timeout)
    last = 0.0
    for batch in stream:
        if stopped():
            stream.cancel()
            raise Interrupted
        if time.monotonic() - last > 0.5:  # progress is for people: a few updates a second at most
            report(batch.stats.to_dict())
            last = time.monotonic()
    assert stream.summary is not None
    if stream.summary.result is None:
        raise IncompleteStream("the generator stored no shard result")
    return stream.summary.stats.to_dict()


def pass_summary(checkpoint: BlobRef, keys: Sequence[str], outcomes: Sequence[ShardOutcome]) -> dict[str, Any]:
    """What the run records about a generation pass: the teacher, the shard results, summed statistics."""
    totals: dict[str, int] = {}
    for outcome in outcomes:
        for name, value in outcome.stats.items():
            totals[name] = totals.get(name, 0) + int(value)
    return {"teacher_checkpoint": dataclasses.asdict(checkpoint), "keys": list(keys), "stats": totals,
            "shards": [{"index": o.index, "address": o.address, "attempts": o.attempts, "seconds": o.seconds,
                        "emitted": o.stats.get("emitted", 0)} for o in outcomes]}


def load_shards(objects: ObjectStore, keys: Sequence[str]) -> list[GeneratedBatch]:
    """The stored shard results, in shard order."""
    return [read_result(objects.get(key))[0] for key in keys]
