"""Typed client of the generator service (used by the orchestrator).

``GeneratorClient(address).generate(...)`` returns a ``GenerationStream``: iterate it for
``rsir.generation.GeneratedBatch`` objects as the server finishes them; afterwards ``summary``
holds the final statistics. UNAVAILABLE is retried only before the first message: a stream that
broke off after delivering batches raises, and the caller retries the whole shard (the output is
deterministic, so any replica gives the same batches).
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from rsir.config import GenerationConfig
from rsir.generation import GeneratedBatch
from rsir_api.v1 import generator_pb2_grpc
from services.common.artifacts import BlobRef, DatasetRef
from services.common.client import RetryingStream, RetryPolicy, call_metadata, open_channel
from services.generator import convert
from services.generator.convert import ShardSummary


class IncompleteStream(RuntimeError):
    """The stream ended without its summary: what it delivered must be discarded."""


class GenerationStream:
    def __init__(self, stream: RetryingStream):
        self._stream = stream
        self.summary: ShardSummary | None = None

    def __iter__(self) -> Iterator[GeneratedBatch]:
        for response in self._stream:
            if response.HasField("summary"):
                self.summary = convert.summary_from_message(response.summary)
            else:
                yield convert.batch_from_message(response.batch)
        if self.summary is None:
            raise IncompleteStream("generation stream ended without a summary; discard its batches")

    def cancel(self) -> None:
        """Cancel the call; the server stops generating within one decoding step."""
        self._stream.cancel()

    def collect(self) -> tuple[list[GeneratedBatch], ShardSummary]:
        batches = list(self)
        assert self.summary is not None
        return batches, self.summary


class GeneratorClient:
    def __init__(self, address: str, *, token: str | None = None, policy: RetryPolicy | None = None,
                 max_message_mb: int = 64):
        self.channel = open_channel(address, max_message_mb)
        self.stub = generator_pb2_grpc.GeneratorStub(self.channel)
        self.metadata = call_metadata(token)
        self.policy = policy or RetryPolicy()

    def generate(self, checkpoint: BlobRef, dataset: DatasetRef, config: GenerationConfig, *,
                 shard: tuple[int, int] = (0, 1), output_key: str = "",
                 timeout: float | None = None) -> GenerationStream:
        request = convert.generate_request(checkpoint, dataset, config, shard, output_key)
        return GenerationStream(RetryingStream(
            lambda t: self.stub.Generate(request, timeout=t, metadata=self.metadata),
            timeout=timeout, policy=self.policy, replay_safe=False))

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> GeneratorClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
