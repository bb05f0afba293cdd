"""Bookkeeping of calls in flight, and running blocking work beside a streaming call.

``Activity`` counts calls (active, completed, cancelled, failed), caps how many run at once (the
rest get RESOURCE_EXHAUSTED, so threads stay free for health checks) and lets tests wait until a
cancelled call has really stopped. ``MemoryBudget`` refuses, with RESOURCE_EXHAUSTED, a call whose
estimated memory does not fit what the service may still hold. ``Background`` runs a function that
reports through a callback (``rsir.training.train``'s ``on_epoch``) in a thread, and yields the
reports as they come.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import grpc

from rsir.resources import rss_bytes
from services.common.errors import Abort

E = TypeVar("E")
R = TypeVar("R")
_DONE = object()
# in the refusal of a call that could not fit even with the service idle (the orchestrator's faults
# match it: retrying cannot help)
NEVER_FITS_BUDGET = "more than this service's whole memory budget"


class Activity:
    """Counts of one servicer's calls; thread-safe."""

    def __init__(self, limit: int):
        self.limit = limit
        self.active = self.completed = self.cancelled = self.failed = 0
        self._cond = threading.Condition()

    def snapshot(self) -> dict[str, int]:
        with self._cond:
            return {"active": self.active, "completed": self.completed, "cancelled": self.cancelled,
                    "failed": self.failed}

    @contextmanager
    def track(self, context: grpc.ServicerContext) -> Iterator[None]:
        with self._cond:
            if self.active >= self.limit:
                raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"busy: {self.active} calls in flight (limit {self.limit}); retry later or elsewhere")
            self.active += 1
        outcome = "failed"
        try:
            yield
            outcome = "completed" if context.is_active() else "cancelled"
        except GeneratorExit:  # the server closed the response stream: the client went away
            outcome = "cancelled"
            raise
        except BaseException:
            outcome = "cancelled" if not context.is_active() else "failed"
            raise
        finally:
            with self._cond:
                self.active -= 1
                setattr(self, outcome, getattr(self, outcome) + 1)
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Block until no call is active; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.active == 0, timeout)


class MemoryBudget:
    """The bytes a service process may hold (its setting ``name``), shared by its calls.

    A call reserves its estimate before allocating; what is free is the budget less the process's
    resident set now and the reservations of calls in flight (whose memory may already be resident:
    counting it twice errs on the safe side).
    """

    def __init__(self, limit: int, name: str):
        self.limit, self.name = limit, name
        self._reserved = 0
        self._lock = threading.Lock()

    def free(self) -> int:
        with self._lock:
            return self.limit - rss_bytes() - self._reserved

    def refusal(self, need: int, free: int, what: str, advice: str) -> Abort:
        """RESOURCE_EXHAUSTED for ``what``, naming the budget's setting and size. A call that needs more
        than the whole budget says so (``NEVER_FITS_BUDGET``): clients retry a busy service, not that."""
        budget = f"{self.name} = {self.limit / 2**20:,.0f} MB"
        if need > self.limit:
            return Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                         f"{what} needs about {need / 2**20:,.0f} MB, {NEVER_FITS_BUDGET} ({budget}); {advice}")
        return Abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                     f"{what} needs about {need / 2**20:,.0f} MB, but only {max(free, 0) / 2**20:,.0f} MB of this "
                     f"service's memory budget ({budget}) is free; {advice}")

    @contextmanager
    def reserve(self, need: int, what: str, advice: str) -> Iterator[None]:
        """Hold ``need`` bytes for the block; RESOURCE_EXHAUSTED naming the budget when they do not fit."""
        with self._lock:
            free = self.limit - rss_bytes() - self._reserved
            if need > free:
                raise self.refusal(need, free, what, advice)
            self._reserved += need
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= need


class Background(Generic[E, R]):
    """Run ``work(emit, should_stop)`` in a thread and iterate over what it emits.

    ``should_stop`` turns true when the call ends (cancelled, deadline, server stopping); ``result``
    holds the return value once iteration is over; an exception in ``work`` re-raises there.
    """

    def __init__(self, work: Callable[[Callable[[E], None], Callable[[], bool]], R], context: grpc.ServicerContext):
        self._work, self._context = work, context
        self._events: queue.Queue[Any] = queue.Queue()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self.result: R | None = None
        context.add_callback(self._stop.set)  # runs when the RPC terminates, however it ends

    def should_stop(self) -> bool:
        return self._stop.is_set() or not self._context.is_active()

    def _run(self) -> None:
        try:
            self.result = self._work(self._events.put, self.should_stop)
        except BaseException as exc:
            self._error = exc
        finally:
            self._events.put(_DONE)

    def __iter__(self) -> Iterator[E]:
        thread = threading.Thread(target=self._run, name="background-work", daemon=True)
        thread.start()
        try:
            while (event := self._events.get()) is not _DONE:
                yield event
        finally:
            self._stop.set()  # also when the consumer stops early
            thread.join()
        if self._error is not None:
            raise self._error
