"""JSON bodies read as JSON whatever they are labelled, and other media types refused with a 415.

``curl -d @spec.json`` labels its body ``application/x-www-form-urlencoded``, other clients send
``text/plain``, ``application/octet-stream`` or no content type at all; FastAPI would answer each with
a 422 that does not say why. For routes that take a JSON body (``POST /runs``), those labels are
relabelled ``application/json`` (a body that is not JSON then gets a 422 naming the JSON error), and
any other media type (``application/xml``, ``multipart/form-data``...) gets a 415 saying to send JSON.
Routes that read their raw body themselves (uploads) declare no body and are left alone; the app
passes the middleware its routes (``json_routes``), since the middleware runs before routing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

JSON = b"application/json"
READ_AS_JSON = (b"", b"text/plain", b"application/octet-stream", b"application/x-www-form-urlencoded")


def _media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


def _is_json(media_type: bytes) -> bool:
    return media_type == JSON or (media_type.startswith(b"application/") and media_type.endswith(b"+json"))


def json_routes(routers: Iterable[APIRouter]) -> list[APIRoute]:
    """The routes of ``routers`` that declare a JSON body (FastAPI's ``body_field``)."""
    return [route for router in routers for route in router.routes
            if isinstance(route, APIRoute) and route.body_field is not None]


class JsonBodyMiddleware:
    def __init__(self, app: ASGIApp, routes: Sequence[APIRoute]):
        self.app, self.routes = app, routes

    def _takes_json(self, scope: Scope) -> bool:
        return any(scope["method"] in (route.methods or ()) and route.path_regex.match(scope["path"])
                   for route in self.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH") and self._takes_json(scope):
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            given = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
            media_type = _media_type(given)
            if not _is_json(media_type):
                if media_type not in READ_AS_JSON:
                    response = JSONResponse({"detail": f"unsupported content type {given.decode('latin-1')!r}: "
                                                       "send the body as JSON (Content-Type: application/json)"},
                                            status_code=415)
                    await response(scope, receive, send)
                    return
                given = JSON
            scope = {**scope, "headers": [*headers, (b"content-type", given)]}
        await self.app(scope, receive, send)

