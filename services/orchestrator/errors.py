"""HTTP answers for failures no route handles itself, so that no request ends in a bare 500.

- Invalid requests: FastAPI's 422, with NaN and infinities in the echoed input turned into null
  (its default handler fails to serialise them and answers 500).
- Redis or the object store unreachable: 503 with ``Retry-After``, naming the dependency.
- A stored blob whose bytes no longer match its recorded sha256: 500 saying so.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from rsir.jsonio import jsonable
from services.common.storage import IntegrityError, StorageUnavailable

logger = logging.getLogger(__name__)
RETRY_AFTER_S = 5


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": jsonable(jsonable_encoder(exc.errors()))}, status.HTTP_422_UNPROCESSABLE_CONTENT)


async def unavailable(request: Request, exc: Exception) -> JSONResponse:
    what = "object storage" if isinstance(exc, StorageUnavailable) else "state store (Redis)"
    logger.warning("%s %s: %s unavailable (%s)", request.method, request.url.path, what, exc)
    return JSONResponse({"detail": f"{what} unavailable; retry shortly"}, status.HTTP_503_SERVICE_UNAVAILABLE,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


async def corrupt(request: Request, exc: Exception) -> JSONResponse:
    logger.error("%s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "a stored blob failed its sha256 check and was not served"},
                        status.HTTP_500_INTERNAL_SERVER_ERROR)


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types handlers as taking any Exception; FastAPI calls this one with RequestValidationError only
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(redis.ConnectionError, unavailable)  # BusyLoadingError too: Redis replaying its AOF
    app.add_exception_handler(redis.TimeoutError, unavailable)
    app.add_exception_handler(StorageUnavailable, unavailable)
    app.add_exception_handler(IntegrityError, corrupt)
