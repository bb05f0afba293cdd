"""Client plumbing shared by the typed service clients: channels, deadlines, retries.

``RetryingStream`` wraps one server-streaming call. It retries on UNAVAILABLE (server down,
restarting, or unreachable) with exponential backoff inside one overall deadline. A stream that has
already delivered messages is retried only when replaying it is harmless (``replay_safe``): the
trainer's job ids make a retry idempotent, while a half-delivered generation stream is surfaced to
the caller, who discards it and retries the shard, possibly elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from rsir_api.v1 import common_pb2, common_pb2_grpc
from services.common.auth import bearer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # calls in all, the first included
    initial_backoff: float = 0.2
    max_backoff: float = 3.0
    multiplier: float = 2.0


def open_channel(address: str, max_message_mb: int = 64) -> grpc.Channel:
    limit = max_message_mb * 2**20
    return grpc.insecure_channel(address, options=[("grpc.max_send_message_length", limit),
                                                   ("grpc.max_receive_message_length", limit)])


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return bearer(token) if token else None


def describe(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] | None,
             timeout: float = 5.0) -> common_pb2.ServiceInfo:
    """What the server behind ``channel`` runs on (``rsir.api.v1.Info``); ``grpc.RpcError`` if unreachable."""
    return common_pb2_grpc.InfoStub(channel).Describe(common_pb2.DescribeRequest(), timeout=timeout,
                                                      metadata=metadata)


class RetryingStream:
    """Iterate over the responses of ``start(timeout)``, retrying on UNAVAILABLE; ``cancel()`` stops."""

    def __init__(self, start: Callable[[float | None], Any], *, timeout: float | None, policy: RetryPolicy,
                 replay_safe: bool):
        self._start, self._policy, self._replay_safe = start, policy, replay_safe
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._call: Any = None
        self._cancelled = False

    def _remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def cancel(self) -> None:
        self._cancelled = True
        if self._call is not None:
            self._call.cancel()

    def __iter__(self) -> Iterator[Any]:
        backoff, attempt = self._policy.initial_backoff, 1
        while True:
            received = False
            self._call = call = self._start(self._remaining())
            try:
                for message in call:
                    received = True
                    yield message
                return
            except GeneratorExit:  # the consumer stopped early: free the server's work at once
                call.cancel()
                raise
            except grpc.RpcError as exc:
                retry = (exc.code() == grpc.StatusCode.UNAVAILABLE and not self._cancelled
                         and attempt < self._policy.attempts and (self._replay_safe or not received))
                remaining = self._remaining()
                if not retry or (remaining is not None and remaining <= backoff):
                    raise
                logger.info("call unavailable (%s); retry %d in %.1f s", exc.details(), attempt, backoff)
            time.sleep(backoff)
            backoff = min(backoff * self._policy.multiplier, self._policy.max_backoff)
            attempt += 1
