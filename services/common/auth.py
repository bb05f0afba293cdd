"""Optional shared-token check: a server interceptor comparing ``authorization: Bearer <token>``.

Enabled when the service's ``*_TOKEN`` setting is present. The health service stays open so that
compose and Kubernetes probes (which send no metadata) keep working.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

HEADER = "authorization"
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that carries ``token``."""
    return ((HEADER, f"Bearer {token}"),)


class TokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str):
        if not token:
            raise ValueError("token must be non-empty")
        self._expected = f"Bearer {token}".encode()

    def _allowed(self, details: grpc.HandlerCallDetails) -> bool:
        if details.method.startswith(OPEN_PREFIXES):
            return True
        sent = dict(details.invocation_metadata or ()).get(HEADER, "")
        return hmac.compare_digest(str(sent).encode(), self._expected)

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Any],
                          details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or self._allowed(details):
            return handler

        def deny(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "missing or wrong token: send metadata 'authorization: Bearer <token>'")

        # a handler of the same shape, so that the client sees a clean status for any RPC kind
        make = {(False, False): grpc.unary_unary_rpc_method_handler,
                (False, True): grpc.unary_stream_rpc_method_handler,
                (True, False): grpc.stream_unary_rpc_method_handler,
                (True, True): grpc.stream_stream_rpc_method_handler}[(handler.request_streaming,
                                                                      handler.response_streaming)]
        return make(deny, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)
