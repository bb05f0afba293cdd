"""Mapping failures to gRPC status codes, in one place for every servicer.

Servicers raise domain errors (``rsir.errors``, storage errors) or ``Abort``; ``rpc_errors`` turns
them into a status with a message a person can act on. Anything unexpected is logged with its
traceback and answered INTERNAL, so no request can crash the server.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from rsir.checkpoint import CheckpointError
from rsir.errors import ConfigError, DataError, InvalidDataError, RsirError
from services.common.storage import BlobNotFound, IntegrityError, InvalidKey, StorageError, StorageUnavailable

logger = logging.getLogger(__name__)

# first match wins: subclasses before their bases
CODES: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (InvalidKey, grpc.StatusCode.INVALID_ARGUMENT),
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (BlobNotFound, grpc.StatusCode.NOT_FOUND),
    (IntegrityError, grpc.StatusCode.FAILED_PRECONDITION),
    (CheckpointError, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidDataError, grpc.StatusCode.INVALID_ARGUMENT),
    (DataError, grpc.StatusCode.FAILED_PRECONDITION),
    (StorageUnavailable, grpc.StatusCode.UNAVAILABLE),
    (StorageError, grpc.StatusCode.INTERNAL),
    (RsirError, grpc.StatusCode.FAILED_PRECONDITION),
)


class Abort(Exception):
    """End the call with ``code`` and ``message`` (for conditions no domain error describes)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code


def status_for(exc: Exception) -> tuple[grpc.StatusCode, str] | None:
    """The status an expected error maps to, or None for an unexpected one."""
    if isinstance(exc, Abort):
        return exc.code, str(exc)
    for kind, code in CODES:
        if isinstance(exc, kind):
            return code, str(exc)
    return None


@contextmanager
def rpc_errors(context: grpc.ServicerContext, method: str) -> Iterator[None]:
    """Abort the call with the mapped status when the body raises (never call ``context.abort``
    inside the body: its exception would be mapped again)."""
    try:
        yield
    except Exception as exc:
        status = status_for(exc)
        if status is None:
            logger.exception("%s failed unexpectedly", method)
            status = (grpc.StatusCode.INTERNAL,
                      f"internal error ({type(exc).__name__}: {exc}); the server log has the traceback")
        else:
            logger.info("%s: %s %s", method, status[0].name, status[1])
        context.abort(*status)
