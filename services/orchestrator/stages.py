"""The run state machine: one ``Execution`` carries a run from the stage its document names to the end.

A run moves through ``prepare`` → (``train_student`` → [``train_teacher``] → ``generate`` →
``merge``) × K → ``train_student`` → ``report`` → ``done``. Each stage reads what earlier stages
committed to the run document, does its work, and commits its result together with the next stage
in one write; so a restarted orchestrator simply runs the stage the document names again. Every
stage is safe to repeat: trainer jobs are idempotent by job id, shard results are stored once under
fixed keys and skipped when present, and dataset versions are content-addressed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import TYPE_CHECKING, Any

import grpc
import redis

from rsir.config import to_dict
from rsir.generation import merge_generated
from rsir.sources import SYNTHETIC, load_benchmark
from rsir.synthetic import synthetic_dataset
from rsir.training import STOP_METRIC, EpochReport
from services.common.artifacts import BlobRef
from services.common.storage import StorageUnavailable
from services.orchestrator.report import build_report, dataset_summary, outcome_json, significance
from services.orchestrator.schemas import HEX64, RunSpec
from services.orchestrator.shards import Interrupted, load_shards, pass_summary, run_shards, shard_keys
from services.orchestrator.store import FINAL, DatasetStore, dumps
from services.trainer.client import IncompleteTraining

if TYPE_CHECKING:
    from services.orchestrator.driver import Driver

logger = logging.getLogger(__name__)
BUSY = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# the run waits at its stage for these to pass, and resumes there
TRANSIENT = (redis.RedisError, StorageUnavailable)


class RunError(RuntimeError):
    """A run cannot go on for a reason its spec or its inputs explain."""


def after_student(scores: list[float], iterations: int, patience: int | None) -> tuple[int, str | None]:
    """The iteration selected on validation (the best score; the earliest on a tie) and why the run
    stops after the latest one (None: it goes on)."""
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    k = len(scores) - 1
    if k >= iterations:
        return best, "iterations"
    if patience is not None and k - best >= patience:
        return best, "early_stop"
    return best, None


def finish(store: DatasetStore, run: dict[str, Any], status: str, error: str | None = None) -> None:
    run.update(status=status, finished_at=time.time(), error=error)
    if status != "completed":
        run["stopped_by"] = run.get("stopped_by") or status
    store.save_run(run)
    store.emit(run["id"], "finished", {"status": status, "error": error})


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
        run = self.store.get_run(self.run_id)
        if run is None or run["status"] in FINAL:
            return True
        self.doc, self.spec = run, RunSpec.model_validate(run["spec"])
        if self.store.cancel_requested(self.run_id):
            finish(self.store, run, "cancelled")
            return True
        if run["status"] == "running":
            run["resumes"] += 0 if retry else 1
            self.store.emit(self.run_id, "resumed", {"stage": run["stage"], "iteration": run["iteration"],
                                                     "retry": retry})
        run.update(status="running", started_at=run["started_at"] or time.time())
        self.store.save_run(run)
        self.store.emit(self.run_id, "status", {"status": "running"})
        while run["stage"] != "done":
            stage, k = run["stage"], run["iteration"]
            self.store.emit(self.run_id, "stage", {"stage": stage, "iteration": k})
            self._set_progress(stage=stage, iteration=k)
            t0 = time.perf_counter()
            try:
                self._check()
                getattr(self, f"_{stage}")(run)
            except Interrupted:
                if self.store.cancel_requested(self.run_id):
                    finish(self.store, run, "cancelled")
                    return True
                logger.info("run %s interrupted in %s; it resumes there on the next start", self.run_id, stage)
                return False
            except TRANSIENT:
                raise
            except Exception as exc:
                logger.exception("run %s failed in stage %s", self.run_id, stage)
                if isinstance(exc, grpc.RpcError):  # name the service, not grpc's internal call class
                    trainer = self.driver.trainer.address
                    detail = f"gRPC {exc.code().name} from the trainer at {trainer}: {exc.details()}"
                else:
                    detail = f"{type(exc).__name__}: {exc}"
                finish(self.store, run, "failed", f"{stage} (iteration {k}): {detail}")
                return True
            seconds = time.perf_counter() - t0
            self.driver.metrics.stage_seconds.labels(stage).observe(seconds)
            if k < len(run["iterations"]):
                run["iterations"][k].setdefault("timings", {})[stage] = seconds
            self.store.save_run(run)  # the commit point: the stage's result and the next stage together
        finish(self.store, run, "completed")
        return True

    # -- helpers ------------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.driver.stopping.is_set() or self.store.cancel_requested(self.run_id):
            raise Interrupted

    def _set_progress(self, **values: Any) -> None:
        with self._lock:
            if "stage" in values:
                self.progress = {}
            self.progress.update(values)
            self.store.set_progress(self.run_id, self.progress)

    def _train(self, role: str, k: int, model: Any, config: Any) -> dict[str, Any]:
        job_id = f"{self.run_id}-{k}-{role}"
        ref = self.store.dataset_ref(self.doc["datasets"][k])

        def on_epoch(report: EpochReport) -> None:
            data = {"role": role, "iteration": k, "epoch": report.epoch, "max_epochs": config.max_epochs,
                    "loss": report.loss, "valid": report.valid, "best_epoch": report.best_epoch}
            self.store.emit(self.run_id, "epoch", data)
            self._set_progress(**data)
            self._check()  # raising here cancels the call: the trainer stops within one batch

        deadline = time.monotonic() + self.driver.settings.busy_wait_s
        while True:
            self._check()
            try:
                outcome = self.driver.trainer.train(job_id, ref, model, config, on_progress=on_epoch,
                                                    timeout=self.driver.settings.train_timeout_s)
                return outcome_json(outcome)
            except (grpc.RpcError, IncompleteTraining) as exc:
                self._check()
                busy = isinstance(exc, IncompleteTraining) or exc.code() in BUSY
                if not busy or time.monotonic() > deadline:
                    raise
                logger.info("trainer busy or unavailable for %s; retrying", job_id)
                self.driver.stopping.wait(2.0)

    def _teacher_checkpoint(self, k: int) -> BlobRef:
        teacher = self.spec.teacher
        if teacher is not None and teacher.checkpoint is not None:
            record = self.store.get_checkpoint(teacher.checkpoint)
            if record is None:
                raise RunError(f"teacher.checkpoint: no uploaded checkpoint {teacher.checkpoint}")
            return BlobRef(record["uri"], record["sha256"])
        outcome = self.doc["iterations"][k]["teacher" if teacher is not None else "student"]
        return BlobRef(**outcome["checkpoint"])

    # -- stages -------------------------------------------------------------------------------------
    def _prepare(self, run: dict[str, Any]) -> None:
        source = self.spec.dataset
        if HEX64.fullmatch(source):
            record = self.store.get_dataset(source)
            if record is None:
                raise RunError(f"dataset: no dataset version {source}")
        else:
            data = synthetic_dataset() if source == SYNTHETIC else load_benchmark(source, self.driver.settings.data_dir)
            record, _ = self.store.publish_dataset(data, {"source": source, "parent": None})
        self.driver.failpoint("prepare", "published")
        run.update(datasets=[record["version"]], iterations=[dataset_summary(0, record)], stage="train_student")

    def _train_student(self, run: dict[str, Any]) -> None:
        k = run["iteration"]
        outcome = self._train("student", k, self.spec.student.config(), self.spec.train.config(self.spec.seed))
        self.driver.failpoint("train_student", "trained")
        run["iterations"][k]["student"] = outcome
        self.store.emit(self.run_id, "iteration", {"iteration": k, "test": outcome["test"], "valid": outcome["valid"]})
        scores = [it["student"]["valid"].get(STOP_METRIC, 0.0) for it in run["iterations"]]
        run["selected"], stopped_by = after_student(scores, self.spec.iterations, self.spec.early_stop)
        if stopped_by is not None:
            run.update(stage="report", stopped_by=stopped_by)
        else:
            run["stage"] = "train_teacher" if self.spec.teacher and self.spec.teacher.model else "generate"

    def _train_teacher(self, run: dict[str, Any]) -> None:
        k, teacher = run["iteration"], self.spec.teacher
        assert teacher is not None and teacher.model is not None
        config = (teacher.train or self.spec.train).config(self.spec.seed)
        run["iterations"][k]["teacher"] = self._train("teacher", k, teacher.model.config(), config)
        self.driver.failpoint("train_teacher", "trained")
        run["stage"] = "generate"

    def _generate(self, run: dict[str, Any]) -> None:
        k = run["iteration"]
        checkpoint = self._teacher_checkpoint(k)
        keys = shard_keys(self.run_id, k, len(self.driver.generators) * self.driver.settings.shards_per_generator)
        shards: dict[int, dict[str, Any]] = {}

        def on_progress(index: int, stats: dict[str, Any]) -> None:
            with self._lock:
                shards[index] = stats
            self._set_progress(shards={str(i): s for i, s in sorted(shards.items())}, shard_count=len(keys))
            if stats.get("done"):
                self.store.emit(self.run_id, "shard", {"iteration": k, "shard": index, "count": len(keys), **stats})
                self.driver.failpoint("generate", "shard_stored")

        outcomes = run_shards(self.driver.generators, self.store.objects, checkpoint,
                              self.store.dataset_ref(run["datasets"][k]), self.spec.generation.config(self.spec.seed),
                              keys, should_stop=lambda: self.driver.stopping.is_set()
                              or self.store.cancel_requested(self.run_id), on_progress=on_progress,
                              timeout=self.driver.settings.generate_timeout_s,
                              busy_wait=self.driver.settings.busy_wait_s)
        self.driver.metrics.shard_attempts.inc(sum(o.attempts for o in outcomes))
        run["iterations"][k]["generation"] = pass_summary(checkpoint, keys, outcomes)
        run["stage"] = "merge"

    def _merge(self, run: dict[str, Any]) -> None:
        k = run["iteration"]
        generation = run["iterations"][k]["generation"]
        parent = self.store.load_dataset(run["datasets"][k])
        config = self.spec.generation.config(self.spec.seed)
        base = parent.name.split("+rsir")[0] or "dataset"
        merged, counts = merge_generated(parent, load_shards(self.store.objects, generation["keys"]),
                                         dedup=config.dedup, name=f"{base}+rsir{k + 1}")
        lineage = {"source": "generated", "parent": parent.version, "run": self.run_id, "iteration": k + 1,
                   "teacher_checkpoint": generation["teacher_checkpoint"],
                   "teacher": self.doc["spec"]["teacher"] or "student",
                   "generation": {**to_dict(config), "tau": "inf" if math.isinf(config.tau) else config.tau},
                   "generation_stats": generation["stats"], "merge": counts}
        record, created = self.store.publish_dataset(merged, lineage)
        self.driver.failpoint("merge", "published")
        self.driver.metrics.generated_sequences.inc(counts["added"] if created else 0)
        run["iterations"][k]["merge"] = counts
        run["datasets"] = [*run["datasets"][:k + 1], merged.version]
        run["iterations"] = [*run["iterations"][:k + 1], dataset_summary(k + 1, record)]
        run.update(iteration=k + 1, stage="train_student")
        self.store.emit(self.run_id, "dataset", {"iteration": k + 1, "version": merged.version, **counts})

    def _report(self, run: dict[str, Any]) -> None:
        if self.spec.significance and run["selected"]:
            run["significance"] = significance(self.store, run)
        report = build_report(run)
        self.driver.failpoint("report", "built")
        info = self.store.objects.put(f"reports/{self.run_id}.json", dumps(report).encode())
        run.update(report={"uri": info.uri, "sha256": info.sha256}, stage="done")

