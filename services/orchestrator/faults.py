"""Every failure of a trainer or generator call classified once, and the run's budget of retries.

A retry helps only where the next attempt can go differently: the server was unreachable, busy,
restarting or the connection broke (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``ABORTED``,
``CANCELLED`` by a server that shut down, ``RESOURCE_EXHAUSTED`` of a server at its call limit or
its memory budget for now, a reset connection). Everything else is the caller's data or settings, a
device that cannot work, or a bug (``INTERNAL``, ``UNKNOWN``, a call that ended cleanly without its
result), and repeating it would repeat the failure while the run holds its slot: the run fails at
once with the reason.

Retries are spaced by capped exponential backoff with jitter and drawn from one budget per run, so
a service that stays down fails the run after a bounded number of attempts with the last reason.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from services.common.calls import NEVER_FITS_BUDGET
from services.generator.client import IncompleteStream
from services.trainer.client import IncompleteTraining

TRANSPORT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
                       grpc.StatusCode.CANCELLED})
# RESOURCE_EXHAUSTED with these details is a request that can never fit (over the message size limit,
# the device's memory, or the service's whole memory budget), not a busy server: no retry makes it fit
NEVER_FITS = ("larger than max", "out of memory", NEVER_FITS_BUDGET)
NO_RESULT = (IncompleteStream, IncompleteTraining)  # the server ended the call cleanly, but without its result
# storage URIs and absolute paths in an error's text: the server's layout, not the client's business
_PATHS = re.compile(r"\b(?:file|s3)://\S*?([^/\s'\"]+)(?=[\s'\",;)]|$)|(?<![\w.:/])(?:/[\w.-]+)+/([\w.-]+)")


@dataclass(frozen=True)
class Fault:
    """What one failed call means: whether another attempt may succeed, and why it failed."""

    retry: bool
    reason: str
    service: str  # "trainer" or "generator"
    code: str  # the gRPC status name, or the exception's type (the metrics' label)


class CallFailed(RuntimeError):
    """A service call failed for good (not retryable, or the run's retries are spent): the reason."""


def classify(exc: BaseException, service: str, address: str) -> Fault:
    """The one table: ``exc`` raised by a call to the ``service`` ("trainer", "generator") at ``address``."""
    component = f"the {service} at {address}"
    if isinstance(exc, grpc.RpcError):
        code, details = exc.code(), redact(exc.details() or "")
        busy = code is grpc.StatusCode.RESOURCE_EXHAUSTED and not any(m in details.lower() for m in NEVER_FITS)
        return Fault(code in TRANSPORT or busy, f"gRPC {code.name} from {component}: {details}", service, code.name)
    kind = type(exc).__name__
    if isinstance(exc, NO_RESULT):
        return Fault(False, f"{component}: {redact(str(exc))}", service, kind)
    return Fault(isinstance(exc, ConnectionError), f"{kind} calling {component}: {redact(str(exc))}", service, kind)


def redact(text: str) -> str:
    """``text`` with storage URIs and absolute paths cut down to their last component."""
    return _PATHS.sub(lambda m: f".../{m.group(1) or m.group(2)}", text)


class Retries:
    """One run's retry budget, shared by its stages and shard threads.

    ``budget``: retries the run may make in all; ``window_s``: how long one call may keep failing.
    Delays grow from ``initial_s`` by 2× per consecutive failure up to ``max_s``, each drawn
    uniformly from its upper half (jitter, so that replicas are not hit in lockstep).
    """

    def __init__(self, budget: int, initial_s: float, max_s: float, window_s: float, *, used: int = 0,
                 on_retry: Callable[[Fault], None] | None = None, rng: random.Random | None = None):
        self.budget, self.initial_s, self.max_s, self.window_s = budget, initial_s, max_s, window_s
        self.used, self.on_retry = used, on_retry
        self._rng = rng or random.Random()
        self._lock = threading.Lock()

    def spend(self, fault: Fault, failing_since: float) -> None:
        """Take one retry for a call failing since ``failing_since`` (``time.monotonic``), or raise
        ``CallFailed`` with the fault's reason when it must not be retried."""
        if not fault.retry:
            raise CallFailed(fault.reason)
        with self._lock:
            if self.used >= self.budget:
                raise CallFailed(f"{fault.reason} (gave up: the run's {self.budget} retries are spent)")
            if time.monotonic() - failing_since > self.window_s:
                raise CallFailed(f"{fault.reason} (gave up: still failing after {self.window_s:g} s)")
            self.used += 1
        if self.on_retry is not None:
            self.on_retry(fault)

    def delay(self, streak: int) -> float:
        """Seconds to wait before attempt ``streak + 1`` of a call that failed ``streak`` times in a row."""
        ceiling = min(self.max_s, self.initial_s * 2 ** max(0, streak - 1))
        return self._rng.uniform(ceiling / 2, ceiling)
