"""The ``rsir.api.v1.Trainer`` servicer: convert, call ``rsir.training.train``, publish, convert back.

Before training, a job is checked against what this process has: its device must exist here, and
its estimated memory (``services.trainer.budget``) must fit the memory budget. Training runs on a
thread of its own at the configured intra-op thread count, set and restored there; with ``nproc``
above 1 (``TRAINER_NPROC``) it runs data parallel in that many local processes instead
(``services.trainer.launch``), and with a ``rendezvous`` (``TRAINER_NNODES`` above 1) as node 0 of
that many nodes; rank 0's checkpoint is published the same way. A job cancelled at any point
before its record is written publishes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import torch

from rsir.checkpoint import checkpoint_bytes, load_checkpoint
from rsir.datasets import SequenceDataset
from rsir.errors import ConfigError
from rsir.evaluation import EvalResult, evaluate
from rsir.models import SequentialRecommender
from rsir.parallel import torch_threads
from rsir.resources import available_devices, resolve_device
from rsir.training import EpochReport
from rsir.validation import DEFAULT_MAX_ITEMS
from rsir_api.v1 import common_pb2, trainer_pb2, trainer_pb2_grpc
from services.common.artifacts import BlobRef, fetch_dataset, ranks_bytes
from services.common.calls import Activity, Background, MemoryBudget
from services.common.errors import rpc_errors
from services.common.grpc_server import ServiceDef
from services.common.storage import ObjectStore
from services.trainer import convert
from services.trainer.budget import training_bytes
from services.trainer.jobs import JobRecords
from services.trainer.launch import Fitted, fit, run_job
from services.trainer.rendezvous import Rendezvous

logger = logging.getLogger(__name__)
SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["Trainer"].full_name


class TrainerServicer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self, store: ObjectStore, *, default_device: str = "auto", max_concurrent_calls: int = 1,
                 memory: MemoryBudget | None = None, threads: int = 0, max_items: int = DEFAULT_MAX_ITEMS,
                 nproc: int = 1, rendezvous: Rendezvous | None = None):
        self.store, self.default_device, self.max_items, self.nproc = store, default_device, max_items, nproc
        self.rendezvous = rendezvous
        self.jobs = JobRecords(store)
        self.activity = Activity(max_concurrent_calls)
        self.memory = memory or MemoryBudget(2**63 - 1, "TRAINER_MEMORY_BUDGET_MB")
        self.threads = threads or torch.get_num_threads()

    def info(self) -> common_pb2.ServiceInfo:
        return common_pb2.ServiceInfo(devices=available_devices(),
                                      default_device=str(resolve_device(self.default_device)),
                                      memory_budget_bytes=self.memory.limit)

    def definition(self) -> ServiceDef:
        return ServiceDef(SERVICE_NAME, lambda server: trainer_pb2_grpc.add_TrainerServicer_to_server(self, server),
                          warmup=self.store.check, wait_idle=self.activity.wait_idle, info=self.info)

    def Train(self, request: trainer_pb2.TrainRequest,
              context: grpc.ServicerContext) -> Iterator[trainer_pb2.TrainResponse]:
        with rpc_errors(context, "Train"), self.activity.track(context):
            job = convert.train_job(request, self.default_device)
            resolve_device(job.train.device)  # a device this machine lacks: INVALID_ARGUMENT naming those it has
            with self.jobs.lock(job.job_id, cancelled=lambda: not context.is_active()) as locked:
                done = self.jobs.find(job) if locked else None
                if done is not None:
                    logger.info("job %s: returning the stored result", job.job_id)
                    yield convert.result_response(dataclasses.replace(done, reused=True))
                if not locked or done is not None:
                    return
                dataset = fetch_dataset(self.store, job.dataset, self.max_items)
                estimate = training_bytes(dataset, job.model, job.train)  # each process holds a whole model
                what = f"training job {job.job_id!r} ({estimate.describe()}; {self.nproc} process(es))"
                with self.memory.reserve(estimate.total * self.nproc, what,
                                         "lower train.batch_size or train.eval_batch_size, or use loss 'sampled'"):
                    yield from self._train(job, dataset, context)

    def _train(self, job: convert.TrainJob, dataset: SequenceDataset,
               context: grpc.ServicerContext) -> Iterator[trainer_pb2.TrainResponse]:
        init = self._init(job, dataset) if job.init is not None else None
        run: Background[EpochReport, Fitted | None] = Background(self._fit(job, dataset, init), context)
        try:
            for report in run:
                yield convert.progress_response(report)
            cancelled = lambda: not context.is_active()  # noqa: E731
            if run.result is not None and run.result.result.stopped_by != "cancelled" and not cancelled():
                outcome = self._publish(job, dataset, run.result, cancelled)
                if outcome is not None:
                    yield convert.result_response(outcome)
                    return
        except GeneratorExit:  # cancelled while a message was on its way out: gRPC drops this stream
            pass
        logger.info("job %s cancelled; nothing published", job.job_id)

    def _fit(self, job: convert.TrainJob, dataset: SequenceDataset,
             init: tuple[SequentialRecommender, dict[str, Any]] | None) -> Any:
        """The job as ``work(emit, stop)``: in this process at the service's intra-op thread count (set
        on the thread that runs it), or in ``nproc`` processes (on each node of the rendezvous); ``init``
        continues a checkpoint with the real-data stage alone, or is the start of the whole job
        (``job.warm_start``)."""
        if self.nproc > 1 or self.rendezvous is not None:  # the processes share the service's threads
            threads = max(1, self.threads // self.nproc)
            return lambda emit, stop: run_job(job, dataset, self.nproc, threads, self.max_items, init, emit, stop,
                                              self.rendezvous)

        def work(emit: Any, stop: Any) -> Fitted:
            with torch_threads(self.threads):
                return Fitted(fit(dataset, job.model, job.train, init, emit, stop, job.warm_start))
        return work

    def _init(self, job: convert.TrainJob, dataset: SequenceDataset) -> tuple[SequentialRecommender, dict[str, Any]]:
        """The checkpoint to continue, published by this service (its metrics say how it was trained)."""
        assert job.init is not None
        model, info = load_checkpoint(self.store.get_uri(job.init.uri, job.init.sha256 or None))
        if info.model_config != job.model or info.num_items != dataset.num_items:
            raise ConfigError("init_checkpoint: was trained with another model config or catalogue")
        if not {"valid", "best_epoch", "epochs", "seconds"} <= set(info.metrics):
            raise ConfigError("init_checkpoint: not published by a trainer (no training record in it)")
        return model, info.metrics

    def _publish(self, job: convert.TrainJob, dataset: SequenceDataset, fitted: Fitted,
                 cancelled: Callable[[], bool]) -> convert.TrainOutcome | None:
        """Evaluate on test (unless the training processes did, sharded), store the checkpoint, then
        the job record (the record commits the job); None, with nothing stored, when the call was
        cancelled before the writes."""
        result = fitted.result
        ranked: EvalResult | None = fitted.test
        if ranked is None:
            device = next(result.model.parameters()).device
            with torch_threads(self.threads):
                ranked = evaluate(result.model, dataset, "test", batch_size=job.train.eval_batch_size,
                                  device=device)
        if cancelled():
            return None
        test = ranked.metrics()
        record = {"test": test, "valid": result.valid, "best_epoch": result.best_epoch, "epochs": result.epochs,
                  "seconds": result.seconds}
        blob = self.store.put(f"checkpoints/{job.job_id}.pt", checkpoint_bytes(result.model, job.train,
                                                                             dataset.version, record))
        ranks = self.store.put(f"ranks/{job.job_id}.npy", ranks_bytes(ranked.ranks))
        outcome = convert.TrainOutcome(
            job_id=job.job_id, checkpoint=BlobRef(blob.uri, blob.sha256), test=test, valid=result.valid,
            best_epoch=result.best_epoch, epochs=result.epochs, stopped_by=result.stopped_by, seconds=result.seconds,
            seconds_per_epoch=result.seconds_per_epoch, peak_memory_mb=result.peak_memory_mb,
            dataset_version=dataset.version, finetune_kept=result.finetune_kept,
            insertion_sequences=result.insertion_sequences, ranks=BlobRef(ranks.uri, ranks.sha256))
        self.jobs.save(job, outcome)
        logger.info("job %s: published %s (test ndcg@10 %.4f)", job.job_id, blob.uri, test["ndcg@10"])
        return outcome
