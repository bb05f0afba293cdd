"""Records of finished training jobs, kept in object storage under ``jobs/trainer/<job_id>.json``.

They make ``Train`` idempotent: a job id with a record answers from it; a job id reused for a
different request is refused. A per-id lock keeps two concurrent calls with one id from training
twice inside one process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc

from services.common.errors import Abort
from services.common.storage import BlobNotFound, ObjectStore
from services.trainer.convert import TrainJob, TrainOutcome, outcome_from_json, outcome_to_json


class JobRecords:
    def __init__(self, store: ObjectStore):
        self.store = store
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._guard = threading.Lock()

    @staticmethod
    def key(job_id: str) -> str:
        return f"jobs/trainer/{job_id}.json"

    @contextmanager
    def lock(self, job_id: str, cancelled: Callable[[], bool]) -> Iterator[bool]:
        """Hold the job's lock; yields False instead when ``cancelled`` turns true while waiting."""
        with self._guard:
            lock, users = self._locks.get(job_id, (threading.Lock(), 0))
            self._locks[job_id] = (lock, users + 1)
        acquired = False
        try:
            while not (acquired := lock.acquire(timeout=0.5)) and not cancelled():
                pass
            yield acquired
        finally:
            if acquired:
                lock.release()
            with self._guard:
                lock, users = self._locks[job_id]
                if users == 1:
                    del self._locks[job_id]
                else:
                    self._locks[job_id] = (lock, users - 1)

    def find(self, job: TrainJob) -> TrainOutcome | None:
        """The stored outcome of ``job``, None when it never finished; ALREADY_EXISTS when the id
        belongs to a different request."""
        try:
            record = json.loads(self.store.get(self.key(job.job_id)))
        except BlobNotFound:
            return None
        if record["fingerprint"] != job.fingerprint():
            raise Abort(grpc.StatusCode.ALREADY_EXISTS,
                        f"job id {job.job_id!r} already ran with a different dataset, model or training spec; "
                        "use a new job id")
        return outcome_from_json(record["outcome"])

    def save(self, job: TrainJob, outcome: TrainOutcome) -> None:
        record = {"job_id": job.job_id, "fingerprint": job.fingerprint(), "outcome": outcome_to_json(outcome)}
        self.store.put(self.key(job.job_id), json.dumps(record, sort_keys=True).encode())
