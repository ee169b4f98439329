"""The FastAPI app factory, the error mapping and the shared dependencies."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import text
from sqlalchemy.orm import Session

from relance import __version__
from relance.config import Settings, get_settings
from relance.contacts.schemas import ErrorOut
from relance.db import session_scope
from relance.errors import DomainError

log = logging.getLogger(__name__)


def get_db() -> Iterator[Session]:
    """One unit of work per request: commit on success, roll back on any error."""
    with session_scope() as session:
        yield session


DbSession = Annotated[Session, Depends(get_db)]
API_KEY_COOKIE = "relance_api_key"
_bearer = HTTPBearer(auto_error=False)


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> int:
    """Every /api route needs ``Authorization: Bearer <api key>``.

    It uses a short session of its own, closed before the handler runs: a long response (the
    SSE stream) must not hold a transaction, which on SQLite would block every writer.
    """
    from relance.auth import find_api_key

    key = credentials.credentials if credentials is not None else None
    if key is None or (credentials is not None and credentials.scheme.lower() != "bearer"):
        # The dashboard's login stores the key in an HttpOnly cookie (EventSource sends no header).
        key = request.cookies.get(API_KEY_COOKIE)
    if not key:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send Authorization: Bearer <key> (relance apikey create)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with session_scope() as session:
        found_id = getattr(find_api_key(session, key), "id", None)
    if found_id is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return int(found_id)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed request"},
    401: {"model": ErrorOut, "description": "Missing or invalid API key, or bad signature"},
    403: {"model": ErrorOut, "description": "Wrong signature or verify token"},
    404: {"model": ErrorOut, "description": "Unknown id"},
    409: {"model": ErrorOut, "description": "Not allowed in the object's current state"},
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


def health(session: DbSession) -> JSONResponse:
    from relance.health import broker_ok

    settings = get_settings()
    checks: dict[str, Any] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = {"ok": True, "backend": session.get_bind().dialect.name}
    except Exception as exc:  # health must report, not raise
        checks["database"] = {"ok": False, "error": str(exc)[:200]}
    checks["broker"] = broker_ok(settings)
    healthy = all(c["ok"] for c in checks.values())
    body = {"status": "ok" if healthy else "degraded", "version": __version__, **checks}
    return JSONResponse(body, status_code=200 if healthy else 503)


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

    app.add_api_route("/health", health, methods=["GET"], tags=["health"])
    from relance.routes import include_routes

    include_routes(app)
    return app
