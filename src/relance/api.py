"""The FastAPI app factory: the gate, the routers, and the one mapping of errors to HTTP."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from relance import __version__
from relance.campaigns import endpoints as campaign_endpoints
from relance.campaigns import template_endpoints, webhook_endpoints
from relance.config import Settings, get_settings
from relance.contacts import category_endpoints
from relance.contacts import endpoints as contact_endpoints
from relance.errors import ERROR_RESPONSES, DomainError
from relance.gate import API_KEY_COOKIE, Gate, bearer_token, cookie_value, lookup_api_key
from relance.health import HealthProbe
from relance.providers.base import WebhookRejected
from relance.web import pages, session

ROUTERS = (
    contact_endpoints.router,
    category_endpoints.router,
    campaign_endpoints.router,
    campaign_endpoints.dashboard,
    template_endpoints.router,
    webhook_endpoints.router,
    session.router,
    pages.router,
)


def _field_name(loc: tuple[Any, ...]) -> str:
    # Only the first part says where the field came from: a template's "header" is a field.
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    return ".".join(str(p) for p in loc) or "body"


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
    workers: list[dict[str, Any]] | None = None
    beat: list[dict[str, Any]] | None = None


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

    @app.exception_handler(WebhookRejected)
    async def _webhook_rejected(_: Request, exc: WebhookRejected) -> JSONResponse:
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
    for router in ROUTERS:
        app.include_router(router, responses=ERROR_RESPONSES)
    app.add_middleware(Gate, settings=settings)
    return app
