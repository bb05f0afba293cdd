"""Read form-encoded bodies as JSON, so that ``curl -d @spec.json`` works without a header.

``curl -d`` labels its body ``application/x-www-form-urlencoded``; FastAPI then refuses a JSON body
with a 422 that does not say why. No route of this API takes a form, so that label is relabelled
``application/json``: a body that is not JSON still gets a 422, naming the JSON error.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

FORM = b"application/x-www-form-urlencoded"


class FormAsJsonMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH"):
            headers = [(name, b"application/json" if name == b"content-type" and value.startswith(FORM) else value)
                       for name, value in scope["headers"]]
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)
