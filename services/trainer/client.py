"""Typed client of the trainer service (used by the orchestrator).

``TrainerClient(address).train(job_id, dataset, model, train, on_progress=...)`` returns a
``TrainOutcome``. It retries on UNAVAILABLE inside one deadline; because job ids make ``Train``
idempotent, even a call that broke off mid-training is safely retried (progress may then repeat).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from rsir.config import ModelConfig, TrainConfig
from rsir.training import EpochReport
from rsir_api.v1 import common_pb2, trainer_pb2_grpc
from services.common.artifacts import BlobRef, DatasetRef
from services.common.client import RetryingStream, RetryPolicy, call_metadata, describe, open_channel
from services.trainer import convert
from services.trainer.convert import TrainOutcome


class IncompleteTraining(RuntimeError):
    """The stream ended without a result (the server stopped the job)."""


class TrainerClient:
    def __init__(self, address: str, *, token: str | None = None, policy: RetryPolicy | None = None,
                 max_message_mb: int = 64):
        self.address = address
        self.channel = open_channel(address, max_message_mb)
        self.stub = trainer_pb2_grpc.TrainerStub(self.channel)
        self.metadata = call_metadata(token)
        self.policy = policy or RetryPolicy()

    def train(self, job_id: str, dataset: DatasetRef, model: ModelConfig, train: TrainConfig, *,
              init: BlobRef | None = None, warm_start: bool = False,
              on_progress: Callable[[EpochReport], None] | None = None,
              timeout: float | None = None, should_stop: Callable[[], bool] | None = None,
              poll_s: float = 0.2) -> TrainOutcome:
        """Run (or look up) one training job; ``grpc.RpcError`` carries the server's status.

        ``should_stop`` is polled every ``poll_s`` seconds while the job trains: once true the call
        is cancelled (CANCELLED), which stops the trainer within a batch rather than at the next
        epoch's report."""
        request = convert.train_request(job_id, dataset, model, train, init, warm_start)
        stream = RetryingStream(lambda t: self.stub.Train(request, timeout=t, metadata=self.metadata),
                                timeout=timeout, policy=self.policy, replay_safe=True)
        done = threading.Event()

        def watch() -> None:
            while not done.wait(poll_s):
                if should_stop is not None and should_stop():
                    stream.cancel()
                    return

        if should_stop is not None:
            threading.Thread(target=watch, name="train-cancel-watch", daemon=True).start()
        outcome = None
        try:
            for response in stream:  # read to the end, so the call finishes cleanly on both sides
                if response.HasField("result"):
                    outcome = convert.outcome_from_message(response.result)
                elif on_progress is not None:
                    on_progress(convert.report_from_message(response.progress))
        finally:
            done.set()
        if outcome is None:
            raise IncompleteTraining(f"training job {job_id!r} ended without a result")
        return outcome

    def describe(self, timeout: float = 5.0) -> common_pb2.ServiceInfo:
        """The trainer's devices, default device and memory budget."""
        return describe(self.channel, self.metadata, timeout)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> TrainerClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
