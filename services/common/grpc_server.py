"""The one bootstrap of every RSIR gRPC service.

``Server`` builds a grpc server with the servicer, the standard health service (NOT_SERVING until
the service's warm-up succeeds, retried until it does), reflection, message-size limits and the
optional token check. Reflection answers under both ``grpc.reflection.v1`` (what current tools ask
first) and ``grpc.reflection.v1alpha``; their messages are the same on the wire. A streaming handler
that gRPC abandons (the client cancelled, the deadline passed) is closed on its own thread as soon
as gRPC lets go of it, so its ``finally`` blocks — logs, thread settings — run there and then
instead of whenever garbage collection gets to it. ``serve`` runs it as a process: SIGTERM/SIGINT
enter graceful shutdown (health turns NOT_SERVING), then ``server.stop(grace)`` lets calls in
flight finish for ``grace`` seconds before cancelling them; the main thread blocks in
``wait_for_termination``.
"""

from __future__ import annotations

import inspect
import logging
import signal
import threading
from collections.abc import Callable, Generator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from rsir_api.v1 import common_pb2, common_pb2_grpc
from services.common.auth import TokenInterceptor

logger = logging.getLogger(__name__)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SPARE_THREADS = 4  # beyond the business calls: health checks and reflection never starve
DRAIN_SECONDS = 30.0  # how long an exiting process waits for cancelled calls to wind down
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"
INFO_NAME = common_pb2.DESCRIPTOR.services_by_name["Info"].full_name
_open = threading.local()  # the handler generators started by the call running on this thread


class ClosingExecutor(futures.ThreadPoolExecutor):
    """Runs each call, then closes on the same thread every handler generator it left open."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        return super().submit(_closing, fn, *args, **kwargs)


def _closing(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    _open.generators = []
    try:
        return fn(*args, **kwargs)
    finally:
        for generator in _open.__dict__.pop("generators"):
            generator.close()  # a no-op for one that finished; GeneratorExit at its yield otherwise


class ClosingInterceptor(grpc.ServerInterceptor):
    """Registers the generator each streaming handler returns with ``ClosingExecutor``."""

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
                          details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None or not handler.response_streaming:
            return handler
        kind = "stream_stream" if handler.request_streaming else "unary_stream"
        behavior = getattr(handler, kind)

        def tracked(request: Any, context: grpc.ServicerContext) -> Any:
            result = behavior(request, context)
            if inspect.isgenerator(result):
                _registered().append(result)
            return result

        return handler._replace(**{kind: tracked})  # type: ignore[attr-defined]  # a namedtuple in grpc


def _registered() -> list[Generator[Any, Any, Any]]:
    if not hasattr(_open, "generators"):  # a call not run by ClosingExecutor: nothing will close it early
        _open.generators = []
    return _open.generators


@dataclass
class ServiceDef:
    """What a service contributes: its full proto name, how to register it, how to get ready."""

    name: str  # e.g. "rsir.api.v1.Generator"
    register: Callable[[grpc.Server], None]
    warmup: Callable[[], None] = field(default=lambda: None)  # raises while not ready
    wait_idle: Callable[[float], bool] = field(default=lambda timeout: True)  # until no call runs; False: timeout
    info: Callable[[], common_pb2.ServiceInfo] = field(default=common_pb2.ServiceInfo)  # served as Info.Describe


class InfoServicer(common_pb2_grpc.InfoServicer):
    def __init__(self, info: Callable[[], common_pb2.ServiceInfo]):
        self.info = info

    def Describe(self, request: common_pb2.DescribeRequest, context: grpc.ServicerContext) -> common_pb2.ServiceInfo:
        return self.info()


class Server:
    def __init__(self, service: ServiceDef, *, host: str = "[::]", port: int = 0, max_concurrent_calls: int = 4,
                 max_message_mb: int = 64, token: str | None = None, retry_seconds: float = 2.0):
        self.service = service
        limit = max_message_mb * 2**20
        options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit),
                   ("grpc.so_reuseport", 0)]
        interceptors: list[grpc.ServerInterceptor] = [ClosingInterceptor()]
        if token:
            interceptors.append(TokenInterceptor(token))
        self.grpc = grpc.server(ClosingExecutor(max_concurrent_calls + SPARE_THREADS,
                                                thread_name_prefix=service.name.rsplit(".", 1)[-1]),
                                options=options, interceptors=interceptors)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        service.register(self.grpc)
        common_pb2_grpc.add_InfoServicer_to_server(InfoServicer(service.info), self.grpc)
        _enable_reflection((service.name, INFO_NAME, health.SERVICE_NAME, REFLECTION_V1, reflection.SERVICE_NAME),
                           self.grpc)
        self.port = self.grpc.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"cannot bind {host}:{port}")
        self._retry = retry_seconds
        self._stopping = threading.Event()
        self.ready = threading.Event()
        self._set(NOT_SERVING)

    def _set(self, status: Any) -> None:
        for name in ("", self.service.name):  # "" is the whole server
            self.health.set(name, status)

    def _warm_up(self) -> None:
        while not self._stopping.is_set():
            try:
                self.service.warmup()
            except Exception as exc:
                logger.warning("%s not ready yet: %s (retrying in %.0f s)", self.service.name, exc, self._retry)
                self._stopping.wait(self._retry)
                continue
            if not self._stopping.is_set():
                self._set(SERVING)
                self.ready.set()
                logger.info("%s serving on port %d", self.service.name, self.port)
            return

    def start(self) -> Server:
        """Start answering (health says NOT_SERVING) and warm up in the background."""
        self.grpc.start()
        threading.Thread(target=self._warm_up, name="warmup", daemon=True).start()
        return self

    def stop(self, grace: float | None = None) -> threading.Event:
        """Enter graceful shutdown; the returned event is set once the server has stopped."""
        self._stopping.set()
        self.health.enter_graceful_shutdown()
        logger.info("%s shutting down (grace %s s)", self.service.name, grace)
        return self.grpc.stop(grace)


def _enable_reflection(names: tuple[str, ...], server: grpc.Server) -> None:
    """One reflection servicer under both names (grpcio-reflection ships only v1alpha's stubs)."""
    servicer = reflection.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1,
                                                                          {"ServerReflectionInfo": method}),))


def serve(service: ServiceDef, *, host: str, port: int, max_concurrent_calls: int, max_message_mb: int,
          token: str | None, grace: float) -> None:
    """Run ``service`` until SIGTERM or SIGINT, then shut down gracefully."""
    server = Server(service, host=host, port=port, max_concurrent_calls=max_concurrent_calls,
                    max_message_mb=max_message_mb, token=token).start()

    def on_signal(signum: int, _frame: Any) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        server.stop(grace)  # returns at once; wait_for_termination below returns when done

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.grpc.wait_for_termination()
    # cancelled handlers may still be winding down (a training stops at its next batch): let them finish
    if not service.wait_idle(DRAIN_SECONDS):
        logger.warning("%s: calls still running after %.0f s; exiting anyway", service.name, DRAIN_SECONDS)
    logger.info("%s stopped", service.name)
