"""Request dependencies: the app's settings, store and driver, and the token check.

Everything comes from ``app.state``, filled by the lifespan from what ``create_app`` was given: no
module-level singletons, so a test can build as many apps as it likes.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status

from services.orchestrator.driver import Driver
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.store import Store


def get_settings(request: Request) -> OrchestratorSettings:
    return request.app.state.settings


def get_store(request: Request) -> Store:
    return request.app.state.store


def get_driver(request: Request) -> Driver:
    return request.app.state.driver


SettingsDep = Annotated[OrchestratorSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
DriverDep = Annotated[Driver, Depends(get_driver)]


def require_token(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """With ``ORCHESTRATOR_API_TOKEN`` set, mutating endpoints need ``Authorization: Bearer <token>``."""
    expected = settings.token("api_token")
    if expected is None:
        return
    if not hmac.compare_digest((authorization or "").encode(), f"Bearer {expected}".encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer "
                            "<ORCHESTRATOR_API_TOKEN>'", headers={"WWW-Authenticate": "Bearer"})


def require_read_token(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """With ``ORCHESTRATOR_READ_TOKEN_REQUIRED`` set, reads need the token as well."""
    if settings.read_token_required:
        require_token(settings, authorization)


Authorized = Depends(require_token)
ReadAuthorized = Depends(require_read_token)


def field_error(status_code: int, loc: list[str], message: str) -> HTTPException:
    """An error shaped like FastAPI's own validation errors, naming the field at fault."""
    return HTTPException(status_code, [{"loc": loc, "msg": message, "type": "value_error"}])
