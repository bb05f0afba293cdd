"""A run executed by the orchestrator: ``rsir.recursion``'s stages, the work delegated to the services.

``Execution`` carries a run from the stage its document names to the end: each ``rsir.recursion.step``
is followed by one write of the whole document (the stage's result and the next stage together), so a
restarted orchestrator runs the stage the document names again. Every stage is safe to repeat:
trainer jobs are idempotent by job id, shard results are stored once under fixed keys and skipped
when present, and dataset versions are content-addressed. The orchestrator keeps state and versions;
training, ranking and generation happen in the trainer and generator services (``ServiceWorkers``),
whose failures are classified in ``faults.py``: retried within the run's budget, or the run fails at
once naming the service and its address.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import redis

from rsir.config import GenerationConfig, ModelConfig, TrainConfig, to_dict
from rsir.generation import merge_generated
from rsir.jsonio import dumps
from rsir.recursion import RunState, Stage, Trained, step
from rsir.sources import SYNTHETIC, load_benchmark
from rsir.synthetic import synthetic_dataset
from rsir.training import EpochReport
from services.common.artifacts import BlobRef, ranks_from_bytes
from services.common.storage import StorageUnavailable
from services.orchestrator.faults import CallFailed, Retries, classify, redact
from services.orchestrator.report import Run, build_report, dataset_stats
from services.orchestrator.schemas import HEX64
from services.orchestrator.shards import Interrupted, load_shards, pass_summary, run_shards, shard_keys
from services.orchestrator.store import FINAL, Store
from services.trainer.client import IncompleteTraining

if TYPE_CHECKING:
    from services.orchestrator.driver import Driver

logger = logging.getLogger(__name__)
# the run waits at its stage for these to pass, and resumes there
TRANSIENT = (redis.RedisError, StorageUnavailable)


class RunError(RuntimeError):
    """A run cannot go on for a reason its spec or its inputs explain."""


def finish(store: Store, run: Run, status: str, error: str | None = None) -> None:
    run.status, run.finished_at, run.error = status, time.time(), None if error is None else redact(error)
    error = run.error
    if status != "completed":
        run.state.stopped_by = run.state.stopped_by or status
    store.runs.save(run.to_doc())
    store.events.emit(run.id, "finished", {"status": status, "error": error})


class ServiceWorkers:
    """``rsir.recursion.Workers`` over the trainer and generator services and the store."""

    def __init__(self, execution: Execution):
        self.execution, self.driver, self.store = execution, execution.driver, execution.store
        self.run_id = execution.run_id

    def prepare(self) -> tuple[str, dict[str, Any]]:
        source = self.execution.record.spec["dataset"]
        if HEX64.fullmatch(source):
            record = self.store.versions.get(source)
            if record is None:
                raise RunError(f"dataset: no dataset version {source}")
        else:
            data = synthetic_dataset() if source == SYNTHETIC else load_benchmark(source, self.driver.settings.data_dir)
            record, _ = self.store.versions.publish(data, {"source": source, "parent": None})
        self.driver.failpoint("prepare", "published")
        return record["version"], dataset_stats(record)

    def train(self, role: str, k: int, dataset: str, model: ModelConfig, config: TrainConfig,
              init: Trained | None = None, start: Trained | None = None) -> Trained:
        job_id = f"{self.run_id}-{k}-{role}"
        ref = self.store.versions.ref(dataset)
        origin = init or start
        checkpoint = None if origin is None else BlobRef(**origin.checkpoint)

        def on_epoch(report: EpochReport) -> None:
            data = {"role": role, "iteration": k, "epoch": report.epoch, "max_epochs": config.max_epochs,
                    "loss": report.loss, "valid": report.valid, "best_epoch": report.best_epoch}
            self.store.events.emit(self.run_id, "epoch", data)
            self.execution.set_progress(**data)
            self.execution.check()  # raising here cancels the call: the trainer stops within one batch

        trainer, settings, metrics = self.driver.trainer, self.driver.settings, self.driver.metrics
        streak, failing_since = 0, time.monotonic()
        while True:
            self.execution.check()
            metrics.calls.labels("trainer").inc()
            try:
                outcome = trainer.train(job_id, ref, model, config, init=checkpoint, warm_start=start is not None,
                                        on_progress=on_epoch, timeout=settings.train_timeout_s,
                                        should_stop=self.execution.stop_requested)
                break
            except (grpc.RpcError, IncompleteTraining) as exc:
                self.execution.check()
                fault = classify(exc, "trainer", trainer.address)
                metrics.failed(fault)
                self.execution.retries.spend(fault, failing_since)  # raises CallFailed when it must not retry
                streak += 1
                delay = self.execution.retries.delay(streak)
                logger.warning("%s: %s; retrying in %.1f s", job_id, fault.reason, delay)
                self.driver.stopping.wait(delay)
        self.driver.failpoint(f"train_{role}", "trained")
        if outcome.ranks is None:
            raise RunError(f"the trainer at {trainer.address} returned no test ranks (an older version?)")
        recorded = dataclasses.asdict(outcome)  # the checkpoint and ranks become their JSON handles
        trained = Trained(**{f.name: recorded[f.name] for f in dataclasses.fields(Trained)})
        if role == "student":
            self.store.events.emit(self.run_id, "iteration", {"iteration": k, "test": outcome.test,
                                                              "valid": outcome.valid})
        return trained

    def fixed_teacher(self, checkpoint: str) -> Any:
        record = self.store.checkpoints.get(checkpoint)
        if record is None:
            raise RunError(f"teacher.checkpoint: no uploaded checkpoint {checkpoint}")
        return {"uri": record["uri"], "sha256": record["sha256"]}

    def generate(self, k: int, teacher: Any, dataset: str, config: GenerationConfig) -> dict[str, Any]:
        checkpoint, lock = BlobRef(**teacher), threading.Lock()
        keys = shard_keys(self.run_id, k, len(self.driver.generators) * self.driver.settings.shards_per_generator)
        shards: dict[int, dict[str, Any]] = {}

        def on_progress(index: int, stats: dict[str, Any]) -> None:
            with lock:
                shards[index] = stats
            self.execution.set_progress(shards={str(i): s for i, s in sorted(shards.items())}, shard_count=len(keys))
            if stats.get("done"):
                self.store.events.emit(self.run_id, "shard", {"iteration": k, "shard": index, "count": len(keys),
                                                               **stats})
                self.driver.failpoint("generate", "shard_stored")

        outcomes = run_shards(self.driver.generators, self.store.objects, checkpoint, self.store.versions.ref(dataset),
                              config, keys, should_stop=self.execution.stop_requested, on_progress=on_progress,
                              timeout=self.driver.settings.generate_timeout_s, retries=self.execution.retries,
                              metrics=self.driver.metrics)
        return pass_summary(checkpoint, keys, outcomes)

    def merge(self, k: int, dataset: str, generation: dict[str, Any], config: GenerationConfig,
              name: str) -> tuple[str, dict[str, Any], dict[str, int]]:
        parent = self.store.versions.load(dataset)
        merged, counts = merge_generated(parent, load_shards(self.store.objects, generation["keys"]),
                                         dedup=config.dedup, name=name)
        teacher = self.execution.record.config["teacher"]
        lineage = {"source": "generated", "parent": parent.version, "run": self.run_id, "iteration": k + 1,
                   "teacher_checkpoint": generation["teacher_checkpoint"], "teacher": teacher or "student",
                   "generation": to_dict(config),
                   "generation_stats": generation["stats"], "merge": counts}
        record, created = self.store.versions.publish(merged, lineage)
        self.driver.failpoint("merge", "published")
        self.driver.metrics.generated_sequences.inc(counts["added"] if created else 0)
        self.store.events.emit(self.run_id, "dataset", {"iteration": k + 1, "version": merged.version, **counts})
        return merged.version, dataset_stats(record), counts

    def ranks(self, handle: Any) -> np.ndarray:
        return ranks_from_bytes(self.store.objects.get_uri(handle["uri"], handle["sha256"]))


class Execution:
    """One pass of a worker over one run, from the stage its document names to the end (or a stop)."""

    def __init__(self, driver: Driver, run_id: str):
        self.driver, self.store, self.run_id = driver, driver.store, run_id
        self.progress: dict[str, Any] = {}
        self._lock = threading.Lock()

    def run(self, retry: bool = False) -> bool:
        """True when the run is over (completed, failed, cancelled); False when interrupted.

        ``retry``: this worker is taking the run up again after Redis or storage was out of reach,
        which is not counted as a resume (one outage would otherwise count once per attempt).
        """
        doc = self.store.runs.get(self.run_id)
        if doc is None or doc["status"] in FINAL:
            return True
        self.record = run = Run.from_doc(doc)
        settings, metrics = self.driver.settings, self.driver.metrics
        self.retries = Retries(settings.retry_budget, settings.retry_backoff_s, settings.retry_backoff_max_s,
                               settings.busy_wait_s, used=run.retries, on_retry=metrics.retried)
        if self.store.runs.cancel_requested(self.run_id):
            finish(self.store, run, "cancelled")
            return True
        if run.status == "running":
            run.resumes += 0 if retry else 1
            metrics.resumes.labels("outage" if retry else "restart").inc()
            self.store.events.emit(self.run_id, "resumed", {"stage": run.state.stage.value,
                                                            "iteration": run.state.iteration, "retry": retry})
        run.status, run.started_at = "running", run.started_at or time.time()
        self.store.runs.save(run.to_doc())
        self.store.events.emit(self.run_id, "status", {"status": "running"})
        config, workers = run.run_config(), ServiceWorkers(self)
        while run.state.stage is not Stage.DONE:
            stage, k = run.state.stage, run.state.iteration
            self.store.events.emit(self.run_id, "stage", {"stage": stage.value, "iteration": k})
            self.set_progress(stage=stage.value, iteration=k)
            t0 = time.perf_counter()

            def timed(outcome: str, stage: Stage = stage, t0: float = t0) -> None:
                metrics.stage_seconds.labels(stage.value, outcome).observe(time.perf_counter() - t0)
                run.retries = self.retries.used

            try:
                self.check()
                run.state = step(run.state, config, workers, self._name(run.state))
                if run.state.stage is Stage.DONE:
                    self._store_report(run)
            except Interrupted:
                timed("interrupted")
                if self.store.runs.cancel_requested(self.run_id):
                    finish(self.store, run, "cancelled")
                    return True
                logger.info("run %s interrupted in %s; it resumes there on the next start", self.run_id, stage)
                return False
            except TRANSIENT:
                timed("interrupted")
                raise
            except (CallFailed, RunError) as exc:  # the reason says it all: no traceback
                timed("failed")
                logger.warning("run %s failed in stage %s: %s", self.run_id, stage, exc)
                finish(self.store, run, "failed", f"{stage.value} (iteration {k}): {exc}")
                return True
            except Exception as exc:
                timed("failed")
                logger.exception("run %s failed in stage %s", self.run_id, stage)
                finish(self.store, run, "failed", f"{stage.value} (iteration {k}): {type(exc).__name__}: {exc}")
                return True
            timed("completed")
            self.store.runs.save(run.to_doc())  # the commit point: the stage's result and the next stage together
        finish(self.store, run, "completed")
        return True

    def _name(self, state: RunState) -> str:
        if not state.iterations:
            return "dataset"
        record = self.store.versions.get(state.iterations[0].dataset)
        return (record or {}).get("name") or "dataset"

    def _store_report(self, run: Run) -> None:
        report = build_report(run)
        self.driver.failpoint("report", "built")
        info = self.store.objects.put(f"reports/{self.run_id}.json", dumps(report).encode())
        run.report = {"uri": info.uri, "sha256": info.sha256}

    def stop_requested(self) -> bool:
        """The orchestrator is stopping or the run was cancelled."""
        return self.driver.stopping.is_set() or self.store.runs.cancel_requested(self.run_id)

    def check(self) -> None:
        if self.stop_requested():
            raise Interrupted

    def set_progress(self, **values: Any) -> None:
        with self._lock:
            if "stage" in values:
                self.progress = {}
            self.progress.update(values)
            self.store.runs.set_progress(self.run_id, self.progress)
