"""One generation pass over all generator replicas: users sharded, failed shards retried elsewhere.

Shard i of n is first sent to replica ``i mod R`` and, when that call fails in a way another replica
or a later try could fix (``faults.classify``: unreachable, busy, stream broken off), to the next
replicas in turn, backing off after each full round; every retry is drawn from the run's budget
(``faults.Retries``). Any other failure ends the pass at once: the other shards' calls are
cancelled and the error names the generator and its address. Every call names an ``output_key``:
the generator stores the complete shard result there, once, after its last batch, so the stored
blobs are the pass's durable output. A restarted orchestrator skips the shards already stored, and
``load_shards`` reads them back in shard order for the merge (which sorts by row id, so the merged
dataset does not depend on which replica ran which shard).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import grpc

from rsir.config import GenerationConfig
from rsir.generation import GeneratedBatch
from services.common.artifacts import BlobRef, DatasetRef
from services.common.storage import ObjectStore
from services.generator.client import GenerationStream, GeneratorClient, IncompleteStream
from services.generator.results import read_result
from services.orchestrator.faults import Retries, classify
from services.orchestrator.metrics import Metrics

logger = logging.getLogger(__name__)


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


class _Calls:
    """The streams in flight, so that one shard's failure can cancel the others' at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self._streams: set[GenerationStream] = set()
        self._lock = threading.Lock()

    def open(self, stream: GenerationStream) -> None:
        with self._lock:
            self._streams.add(stream)
        if self.stop.is_set():
            stream.cancel()

    def close(self, stream: GenerationStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def cancel_all(self) -> None:
        self.stop.set()
        with self._lock:
            for stream in self._streams:
                stream.cancel()


def run_shards(replicas: Sequence[tuple[str, GeneratorClient]], objects: ObjectStore, checkpoint: BlobRef,
               dataset: DatasetRef, config: GenerationConfig, keys: Sequence[str], *,
               should_stop: Callable[[], bool], on_progress: Callable[[int, dict[str, Any]], None],
               timeout: float, retries: Retries, metrics: Metrics) -> list[ShardOutcome]:
    """Make sure every shard's result is stored under ``keys[i]``; the outcomes in shard order.

    Raises ``faults.CallFailed`` (the first shard that failed for good) or ``Interrupted``.
    """
    count, calls = len(keys), _Calls()

    def stopped() -> bool:
        return calls.stop.is_set() or should_stop()

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
        attempts, rounds, failing_since = 0, 0, time.monotonic()
        while True:
            for offset in range(len(replicas)):
                address, client = replicas[(index + offset) % len(replicas)]
                if stopped():
                    raise Interrupted
                attempts += 1
                metrics.calls.labels("generator").inc()
                metrics.shard_attempts.inc()

                def report(stats: dict[str, Any], address: str = address) -> None:
                    on_progress(index, {**stats, "address": address})

                try:
                    stats = _stream_shard(client, calls, checkpoint, dataset, config, (index, count), keys[index],
                                          timeout, stopped, report)
                except (grpc.RpcError, IncompleteStream) as exc:
                    if stopped():
                        raise Interrupted from None
                    if (done := stored(index, address, attempts, t0)) is not None:
                        return done  # the replica stored the result before the stream broke
                    fault = classify(exc, "generator", address)
                    metrics.failed(fault)
                    retries.spend(fault, failing_since)  # raises CallFailed: not retryable, or no retries left
                    logger.warning("shard %d/%d: %s; trying again", index, count, fault.reason)
                    continue
                on_progress(index, {**stats, "done": True, "address": address})
                return ShardOutcome(index, address, attempts, time.perf_counter() - t0, stats)
            rounds += 1
            calls.stop.wait(retries.delay(rounds))  # every replica failed: back off, then go round again

    with ThreadPoolExecutor(max_workers=min(count, 4 * len(replicas)), thread_name_prefix="shard") as pool:
        futures = [pool.submit(one, i) for i in range(count)]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            failed = [error for f in futures if f in done and (error := f.exception()) is not None]
            if failed:
                raise failed[0]
            return [f.result() for f in futures]
        finally:
            calls.cancel_all()  # one shard failed: end the others' calls now, not at their next batch


def _stream_shard(client: GeneratorClient, calls: _Calls, checkpoint: BlobRef, dataset: DatasetRef,
                  config: GenerationConfig, shard: tuple[int, int], key: str, timeout: float,
                  stopped: Callable[[], bool], report: Callable[[dict[str, Any]], None]) -> dict[str, int]:
    stream = client.generate(checkpoint, dataset, config, shard=shard, output_key=key, timeout=timeout)
    calls.open(stream)
    try:
        if stopped():
            raise Interrupted
        last = 0.0
        for batch in stream:
            if stopped():
                stream.cancel()
                raise Interrupted
            if time.monotonic() - last > 0.5:  # progress is for people: a few updates a second at most
                report(batch.stats.to_dict())
                last = time.monotonic()
    finally:
        calls.close(stream)
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
