"""The ``rsir.api.v1.Generator`` servicer: convert, call ``rsir.generation.generate``, stream back.

Each call decodes in chunks no larger than what the memory budget holds (``services.generator.budget``),
at the configured intra-op thread count, set and restored on the call's thread.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Sequence

import grpc
import torch

from rsir.checkpoint import CheckpointInfo
from rsir.datasets import SequenceDataset
from rsir.generation import GeneratedBatch, GenerationStats, generate
from rsir.models import SequentialRecommender
from rsir.parallel import torch_threads
from rsir.resources import available_devices
from rsir.validation import DEFAULT_MAX_ITEMS
from rsir_api.v1 import common_pb2, generator_pb2, generator_pb2_grpc
from services.common.artifacts import BlobRef, CheckpointCache, DatasetCache
from services.common.calls import Activity, MemoryBudget
from services.common.errors import Abort, rpc_errors
from services.common.grpc_server import ServiceDef
from services.common.storage import ObjectStore
from services.generator import convert
from services.generator.budget import bytes_per_row, kept_shard_bytes
from services.generator.results import result_bytes

logger = logging.getLogger(__name__)
SERVICE_NAME = generator_pb2.DESCRIPTOR.services_by_name["Generator"].full_name


class GeneratorServicer(generator_pb2_grpc.GeneratorServicer):
    def __init__(self, store: ObjectStore, *, device: torch.device, checkpoint_cache_size: int = 4,
                 dataset_cache_size: int = 2, max_concurrent_calls: int = 4, max_items_per_message: int = 1 << 20,
                 preload: Sequence[str] = (), memory: MemoryBudget | None = None, threads: int = 0,
                 max_items: int = DEFAULT_MAX_ITEMS):
        self.store, self.device, self.preload = store, device, tuple(preload)
        self.max_items_per_message = max_items_per_message
        self.models = CheckpointCache(store, device, checkpoint_cache_size)
        self.datasets = DatasetCache(store, dataset_cache_size, max_items)
        self.activity = Activity(max_concurrent_calls)
        self.memory = memory or MemoryBudget(2**63 - 1, "GENERATOR_MEMORY_BUDGET_MB")
        self.threads = threads or torch.get_num_threads()

    def info(self) -> common_pb2.ServiceInfo:
        return common_pb2.ServiceInfo(devices=available_devices(), default_device=str(self.device),
                                      memory_budget_bytes=self.memory.limit)

    def definition(self) -> ServiceDef:
        return ServiceDef(SERVICE_NAME,
                          lambda server: generator_pb2_grpc.add_GeneratorServicer_to_server(self, server),
                          warmup=self.warm_up, wait_idle=self.activity.wait_idle, info=self.info)

    def warm_up(self) -> None:
        """Ready when the storage answers, the device works and every preloaded checkpoint is cached."""
        self.store.check()
        torch.zeros(1, device=self.device)  # initialises CUDA now rather than on the first request
        for uri in self.preload:
            self.models.get(BlobRef(uri))

    def Generate(self, request: generator_pb2.GenerateRequest,
                 context: grpc.ServicerContext) -> Iterator[generator_pb2.GenerateResponse]:
        with rpc_errors(context, "Generate"), self.activity.track(context), torch_threads(self.threads):
            start = time.perf_counter()
            job = convert.generate_job(request)
            model, info = self.models.get(job.checkpoint)
            dataset = self.datasets.get(job.dataset)
            _check_compatible(job, info, dataset)
            job, need = self._fit_budget(job, model, len(dataset))
            kept: list[GeneratedBatch] = []
            stats = GenerationStats()
            with self.memory.reserve(need, "this Generate call", "use more shards or a smaller m"):
                try:
                    for batch in generate(model, dataset, job.config, shard=job.shard, device=self.device,
                                          should_stop=lambda: not context.is_active()):
                        stats = batch.stats
                        if job.output_key:
                            kept.append(batch)
                        yield from convert.batch_responses(batch, self.max_items_per_message)
                except GeneratorExit:  # gRPC stopped taking messages: the client went away
                    logger.info("Generate cancelled (shard %s, %d rows done)", job.shard, stats.rows)
                    raise
            if not context.is_active():
                logger.info("Generate cancelled (shard %s, %d rows done)", job.shard, stats.rows)
                return
            result = self._store_result(job, kept, stats) if job.output_key else None
            seconds = time.perf_counter() - start
            logger.info("Generate shard %s: %d rows, %d sequences in %.2f s", job.shard, stats.rows, stats.emitted,
                        seconds)
            yield convert.summary_response(convert.ShardSummary(stats, result, seconds, str(self.device)))

    def _fit_budget(self, job: convert.GenerateJob, model: SequentialRecommender,
                    sources: int) -> tuple[convert.GenerateJob, int]:
        """The job with its chunk lowered to what the memory budget holds, and the bytes to reserve."""
        config, per_row = job.config, bytes_per_row(model, job.config)
        kept = kept_shard_bytes(-(-sources // job.shard[1]), config) if job.output_key else 0
        free = self.memory.free()
        fit = (free - kept) // per_row
        if fit < config.m:  # one source's m rows decode together at the least
            what = f"m = {config.m} rows of up to {config.max_len} items" + (", the whole shard kept" if kept else "")
            raise self.memory.refusal(config.m * per_row + kept, free, f"this Generate call ({what})",
                                      "use more shards or a smaller m")
        rows = min(config.decode_rows, fit)
        if rows < config.decode_rows:
            logger.info("Generate: %d rows per chunk instead of %d, to fit %s", rows, config.decode_rows,
                        self.memory.name)
        return dataclasses.replace(job, config=dataclasses.replace(config, batch_rows=rows)), rows * per_row + kept

    def _store_result(self, job: convert.GenerateJob, kept: list[GeneratedBatch], stats: GenerationStats) -> BlobRef:
        meta = {"checkpoint": job.checkpoint.uri, "dataset_version": job.dataset.version, "shard": list(job.shard)}
        info = self.store.put(job.output_key, result_bytes(kept, stats, meta))
        return BlobRef(info.uri, info.sha256)


def _check_compatible(job: convert.GenerateJob, info: CheckpointInfo, dataset: SequenceDataset) -> None:
    if info.num_items != dataset.num_items:
        raise Abort(grpc.StatusCode.FAILED_PRECONDITION,
                    f"checkpoint {job.checkpoint.uri} was trained on a catalogue of {info.num_items} items but dataset "
                    f"{job.dataset.version[:12]} has {dataset.num_items}; use a teacher trained on this dataset's "
                    "catalogue")
