"""Generator protos ↔ core and domain types (pure functions, round-trip tested)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np

from rsir.config import GenerationConfig
from rsir.errors import ConfigError
from rsir.generation import GeneratedBatch, GenerationStats
from rsir_api.v1 import generator_pb2
from services.common.artifacts import BlobRef, DatasetRef
from services.common.convert import (
    blob_ref_from_message,
    blob_ref_to_message,
    config_from_message,
    config_to_message,
    dataset_ref_from_message,
    dataset_ref_to_message,
)
from services.common.storage import validate_key


@dataclass(frozen=True)
class GenerateJob:
    """A validated ``GenerateRequest``."""

    checkpoint: BlobRef
    dataset: DatasetRef
    shard: tuple[int, int]  # (index, count)
    config: GenerationConfig
    output_key: str = ""


@dataclass(frozen=True)
class ShardSummary:
    """The end of a completed stream."""

    stats: GenerationStats
    result: BlobRef | None
    seconds: float
    device: str


def generate_job(request: generator_pb2.GenerateRequest) -> GenerateJob:
    config = config_from_message(GenerationConfig, request.config, "config")
    count = request.shard.count or 1
    if request.shard.index >= count:
        raise ConfigError(f"shard.index: {request.shard.index} is outside [0, {count}); "
                          f"shards of a {count}-way split are numbered 0..{count - 1}")
    if request.output_key:
        validate_key(request.output_key)
    return GenerateJob(blob_ref_from_message(request.checkpoint, "checkpoint"),
                       dataset_ref_from_message(request.dataset), (request.shard.index, count), config,
                       request.output_key)


def generate_request(checkpoint: BlobRef, dataset: DatasetRef, config: GenerationConfig,
                     shard: tuple[int, int] = (0, 1), output_key: str = "") -> generator_pb2.GenerateRequest:
    return generator_pb2.GenerateRequest(
        checkpoint=blob_ref_to_message(checkpoint), dataset=dataset_ref_to_message(dataset),
        shard=generator_pb2.Shard(index=shard[0], count=shard[1]),
        config=config_to_message(config, generator_pb2.GenerationSpec), output_key=output_key)


def stats_to_message(stats: GenerationStats) -> generator_pb2.GenerationStats:
    return generator_pb2.GenerationStats(**stats.to_dict())


def stats_from_message(message: generator_pb2.GenerationStats) -> GenerationStats:
    return GenerationStats(**{f.name: getattr(message, f.name) for f in fields(GenerationStats)})


def batch_responses(batch: GeneratedBatch, max_items: int) -> Iterator[generator_pb2.GenerateResponse]:
    """The messages of one batch: none when it holds no sequence, several when it is large."""
    lengths = np.fromiter((len(s) for s in batch.sequences), dtype=np.int64, count=len(batch.sequences))
    ends = np.cumsum(lengths)
    stats = stats_to_message(batch.stats)
    start = 0
    while start < len(lengths):
        base = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, base + max_items, side="right")))
        items = np.concatenate(batch.sequences[start:stop])
        yield generator_pb2.GenerateResponse(batch=generator_pb2.GeneratedBatch(
            row_ids=batch.row_ids[start:stop].tolist(), lengths=lengths[start:stop].tolist(), items=items.tolist(),
            stats=stats))
        start = stop


def batch_from_message(message: generator_pb2.GeneratedBatch) -> GeneratedBatch:
    lengths = np.fromiter(message.lengths, dtype=np.int64, count=len(message.lengths))
    items = np.fromiter(message.items, dtype=np.int64, count=len(message.items))
    if int(lengths.sum()) != len(items) or len(lengths) != len(message.row_ids):
        raise ValueError("malformed GeneratedBatch: lengths, row_ids and items disagree")
    return GeneratedBatch(np.fromiter(message.row_ids, dtype=np.int64, count=len(message.row_ids)),
                          np.split(items, np.cumsum(lengths)[:-1]) if len(lengths) else [],
                          stats_from_message(message.stats))


def summary_response(summary: ShardSummary) -> generator_pb2.GenerateResponse:
    return generator_pb2.GenerateResponse(summary=generator_pb2.GenerateSummary(
        stats=stats_to_message(summary.stats), result=None if summary.result is None else blob_ref_to_message(
            summary.result), seconds=summary.seconds, device=summary.device))


def summary_from_message(message: generator_pb2.GenerateSummary) -> ShardSummary:
    result = blob_ref_from_message(message.result, "result") if message.HasField("result") else None
    return ShardSummary(stats_from_message(message.stats), result, message.seconds, message.device)
