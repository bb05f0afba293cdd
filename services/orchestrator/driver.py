"""Queue workers that execute runs, outside the request handlers (the stages: ``stages.py``).

Runs wait in the Redis queue; ``max_concurrent_runs`` workers take them. On start, runs a previous
process had taken are put back at the head of the queue and resumed where they stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import redis

from services.generator.client import GeneratorClient
from services.orchestrator.metrics import Metrics
from services.orchestrator.report import Run, run_document
from services.orchestrator.schemas import RunSpec
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.stages import TRANSIENT, Execution, finish
from services.orchestrator.store import FINAL, Store
from services.trainer.client import TrainerClient

logger = logging.getLogger(__name__)


class Driver:
    """Queue workers that execute runs; ``start``/``stop`` are called by the app's lifespan."""

    def __init__(self, store: Store, trainer: TrainerClient, generators: list[tuple[str, GeneratorClient]],
                 settings: OrchestratorSettings, metrics: Metrics | None = None):
        self.store, self.trainer, self.generators, self.settings = store, trainer, generators, settings
        self.metrics = metrics or Metrics()
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def submit(self, spec: RunSpec) -> dict[str, Any]:
        recipe, config = spec.resolve()
        run = run_document(spec, recipe, config)
        self.store.runs.create(run)
        return run

    def cancel(self, run: dict[str, Any]) -> dict[str, Any]:
        """Ask a run to stop: a waiting one is cancelled at once, a running one at its next check."""
        self.store.runs.request_cancel(run["id"])
        if self.store.runs.dequeue(run["id"]):
            waiting = Run.from_doc(self.store.runs.get(run["id"]) or run)
            finish(self.store, waiting, "cancelled")
            return waiting.to_doc()
        return run

    def start(self) -> None:
        resumed = self.store.runs.requeue_active()
        if resumed:
            logger.info("resuming %d run(s) a previous process had started: %s", len(resumed), ", ".join(resumed))
        for i in range(self.settings.max_concurrent_runs):
            thread = threading.Thread(target=self._worker, name=f"driver-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking runs and cancel the calls in flight (closing the channels ends them at once);
        the runs they belonged to stay at their stage and are resumed by the next start."""
        self.stopping.set()
        self.trainer.close()
        for _, client in self.generators:
            client.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads) and not self.stopping.is_set()

    def _worker(self) -> None:
        while not self.stopping.is_set():
            try:
                run_id = self.store.runs.claim(timeout=0.25)  # short: stop() returns quickly
            except redis.RedisError as exc:
                logger.warning("redis unavailable (%s); retrying", exc)
                self.stopping.wait(1.0)
                continue
            if run_id is None:
                continue
            retry = False
            while not self.stopping.is_set():
                try:
                    if Execution(self, run_id).run(retry=retry):
                        self.store.runs.release(run_id)
                    break
                except TRANSIENT as exc:  # state or blobs out of reach: wait, then resume from Redis
                    logger.warning("run %s: %s: %s; retrying", run_id, type(exc).__name__, exc)
                    retry = True
                    self.stopping.wait(2.0)
                except Exception as exc:  # a bug or a corrupt document: fail the run, keep the worker
                    logger.exception("run %s: unexpected error", run_id)
                    doc = self.store.runs.get(run_id)
                    if doc is not None and doc["status"] not in FINAL:
                        finish(self.store, Run.from_doc(doc), "failed", f"{type(exc).__name__}: {exc}")
                    self.store.runs.release(run_id)
                    break

    def failpoint(self, stage: str, point: str) -> None:
        """Kill this process at a named point when configured to (tests prove resumption with it)."""
        if self.settings.failpoint == f"{stage}:{point}":
            logger.warning("failpoint %s:%s reached: killing the process", stage, point)
            os.kill(os.getpid(), signal.SIGKILL)
