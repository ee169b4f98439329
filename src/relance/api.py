"""The FastAPI app factory, the error mapping and the shared dependencies."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.orm import Session

from relance import __version__
from relance.config import Settings, get_settings
from relance.contacts.schemas import ErrorOut
from relance.db import session_scope
from relance.errors import DomainError
from relance.gate import (
    API_KEY_COOKIE,
    STATE_API_KEY_ID,
    Gate,
    bearer_token,
    cookie_value,
    lookup_api_key,
)
from relance.health import HealthProbe

log = logging.getLogger(__name__)


def get_db() -> Iterator[Session]:
    """One unit of work per request: commit on success, roll back on any error."""
    with session_scope() as session:
        yield session


# scope="function": the transaction commits when the route returns, before the response leaves
# (the default scope runs this exit after the response is sent: a client that read its 201 and
# asked again at once could miss its own write).
DbSession = Annotated[Session, Depends(get_db, scope="function")]
_bearer = HTTPBearer(auto_error=False)


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> int:
    """Every /api route needs ``Authorization: Bearer <api key>`` (or the dashboard's cookie).

    ``relance.gate`` checked the key before the body was read; this dependency gives routes its
    id and documents the scheme in the OpenAPI. It holds no session: a long response (the SSE
    stream) must not hold a transaction, which on SQLite would block every writer.
    """
    key_id = getattr(request.state, STATE_API_KEY_ID, None)
    if key_id is None:  # the gate always runs first; this is a second lock on the same door
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return int(key_id)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed request"},
    401: {"model": ErrorOut, "description": "Missing or invalid API key, or bad signature"},
    403: {"model": ErrorOut, "description": "Wrong signature or verify token"},
    404: {"model": ErrorOut, "description": "Unknown id"},
    409: {"model": ErrorOut, "description": "Not allowed in the object's current state"},
    413: {"model": ErrorOut, "description": "Request body over MAX_BODY_BYTES"},
    422: {"model": ErrorOut, "description": "Invalid input; the detail names the field"},
}


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _validation_detail(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append({"loc": list(loc), "field": _field_name(loc), "msg": msg, "type": err["type"]})
    return out


class HealthOut(BaseModel):
    """``status`` for anyone; the probes' details only with an API key."""

    status: Literal["ok", "degraded"]
    version: str | None = None
    database: dict[str, Any] | None = None
    broker: dict[str, Any] | None = None


async def health(request: Request) -> JSONResponse:
    """200 ``{"status": "ok"}``, or 503 ``degraded`` when the database or the broker is not."""
    settings: Settings = request.app.state.settings
    key = bearer_token(request.headers) or cookie_value(request.headers, API_KEY_COOKIE)
    detailed = bool(key) and await run_in_threadpool(lookup_api_key, settings, str(key)) is not None
    body, code = await run_in_threadpool(request.app.state.health.report, detailed)
    return JSONResponse(body, status_code=code)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="relance",
        version=__version__,
        description="Two-step WhatsApp campaigns that finish by themselves.",
    )

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    app.state.settings = settings
    app.state.health = HealthProbe(settings)
    app.add_api_route(
        "/health",
        health,
        methods=["GET"],
        tags=["health"],
        response_model=HealthOut,
        responses={503: {"model": HealthOut, "description": "database or broker unreachable"}},
    )
    app.add_middleware(Gate, settings=settings)
    from relance.routes import include_routes

    include_routes(app)
    return app
