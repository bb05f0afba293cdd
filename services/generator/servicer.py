"""The ``rsir.api.v1.Generator`` servicer: convert, call ``rsir.generation.generate``, stream back."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence

import grpc
import torch

from rsir.checkpoint import CheckpointInfo
from rsir.datasets import SequenceDataset
from rsir.generation import GeneratedBatch, GenerationStats, generate
from rsir_api.v1 import generator_pb2, generator_pb2_grpc
from services.common.artifacts import BlobRef, CheckpointCache, DatasetCache
from services.common.calls import Activity
from services.common.errors import Abort, rpc_errors
from services.common.grpc_server import ServiceDef
from services.common.storage import ObjectStore
from services.generator import convert
from services.generator.results import result_bytes

logger = logging.getLogger(__name__)
SERVICE_NAME = generator_pb2.DESCRIPTOR.services_by_name["Generator"].full_name


class GeneratorServicer(generator_pb2_grpc.GeneratorServicer):
    def __init__(self, store: ObjectStore, *, device: torch.device, checkpoint_cache_size: int = 4,
                 dataset_cache_size: int = 2, max_concurrent_calls: int = 4, max_items_per_message: int = 1 << 20,
                 preload: Sequence[str] = ()):
        self.store, self.device, self.max_items, self.preload = store, device, max_items_per_message, tuple(preload)
        self.models = CheckpointCache(store, device, checkpoint_cache_size)
        self.datasets = DatasetCache(store, dataset_cache_size)
        self.activity = Activity(max_concurrent_calls)

    def definition(self) -> ServiceDef:
        return ServiceDef(SERVICE_NAME,
                          lambda server: generator_pb2_grpc.add_GeneratorServicer_to_server(self, server),
                          warmup=self.warm_up, wait_idle=self.activity.wait_idle)

    def warm_up(self) -> None:
        """Ready when the storage answers, the device works and every preloaded checkpoint is cached."""
        self.store.check()
        torch.zeros(1, device=self.device)  # initialises CUDA now rather than on the first request
        for uri in self.preload:
            self.models.get(BlobRef(uri))

    def Generate(self, request: generator_pb2.GenerateRequest,
                 context: grpc.ServicerContext) -> Iterator[generator_pb2.GenerateResponse]:
        with rpc_errors(context, "Generate"), self.activity.track(context):
            start = time.perf_counter()
            job = convert.generate_job(request)
            model, info = self.models.get(job.checkpoint)
            dataset = self.datasets.get(job.dataset)
            _check_compatible(job, info, dataset)
            kept: list[GeneratedBatch] = []
            stats = GenerationStats()
            for batch in generate(model, dataset, job.config, shard=job.shard, device=self.device,
                                  should_stop=lambda: not context.is_active()):
                stats = batch.stats
                if job.output_key:
                    kept.append(batch)
                yield from convert.batch_responses(batch, self.max_items)
            if not context.is_active():
                logger.info("Generate cancelled (shard %s, %d rows done)", job.shard, stats.rows)
                return
            result = self._store_result(job, kept, stats) if job.output_key else None
            seconds = time.perf_counter() - start
            logger.info("Generate shard %s: %d rows, %d sequences in %.2f s", job.shard, stats.rows, stats.emitted,
                        seconds)
            yield convert.summary_response(convert.ShardSummary(stats, result, seconds, str(self.device)))

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
