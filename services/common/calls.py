"""Bookkeeping of calls in flight, and running blocking work beside a streaming call.

``Activity`` counts calls (active, completed, cancelled, failed), caps how many run at once (the
rest get RESOURCE_EXHAUSTED, so threads stay free for health checks) and lets tests wait until a
cancelled call has really stopped. ``Background`` runs a function that reports through a callback
(``rsir.training.train``'s ``on_epoch``) in a thread, and yields the reports as they come.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import grpc

from services.common.errors import Abort

E = TypeVar("E")
R = TypeVar("R")
_DONE = object()


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
