"""The FastAPI app factory: the gate, the routers, and the one mapping of errors to HTTP."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from relance import __version__
from relance.accounts import key_endpoints, user_endpoints
from relance.accounts.principal import Principal
from relance.campaigns import endpoints as campaign_endpoints
from relance.campaigns import result_endpoints, template_endpoints, webhook_endpoints
from relance.config import Settings, get_settings
from relance.contacts import category_endpoints
from relance.contacts import endpoints as contact_endpoints
from relance.deps import known_query_only
from relance.errors import ERROR_RESPONSES, DomainError
from relance.gate import STATE_PRINCIPAL, Gate
from relance.health import HealthProbe
from relance.metrics.http import METRICS_PATH, RequestMetrics, metrics_endpoint
from relance.providers.base import WebhookRejected
from relance.senders import endpoints as sender_endpoints
from relance.web import account_pages, contact_pages, pages, sender_pages, session

ROUTERS = (
    # First: the webhook route is the hot one (thousands a second), matched before any other.
    webhook_endpoints.router,
    contact_endpoints.router,
    category_endpoints.router,
    campaign_endpoints.router,
    campaign_endpoints.dashboard,
    result_endpoints.router,
    template_endpoints.router,
    sender_endpoints.router,
    user_endpoints.router,
    key_endpoints.router,
    session.router,
    pages.router,
    contact_pages.router,
    account_pages.router,
    sender_pages.router,
)


LENIENT = (
    webhook_endpoints.router,
    session.router,
    pages.router,
    contact_pages.router,
    account_pages.router,
    sender_pages.router,
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
        out.append({"field": _field_name(loc), "message": msg})
    return out


def error_body(detail: Any) -> dict[str, Any]:
    """The one error shape (README "Errors"): ``{"detail": "..."}``, or ``{"detail": [{"field",
    "message"}]}`` when fields are at fault; the services' ``{field, msg}`` lists become it."""
    if isinstance(detail, list):
        return {
            "detail": [
                {
                    "field": str(item.get("field") or "body"),
                    "message": str(item.get("message", item.get("msg", ""))),
                }
                if isinstance(item, dict)
                else {"field": "body", "message": str(item)}
                for item in detail
            ]
        }
    return {"detail": detail if isinstance(detail, str) else str(detail)}


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
    detailed = isinstance(getattr(request.state, STATE_PRINCIPAL, None), Principal)
    body, code = await run_in_threadpool(request.app.state.health.report, detailed)
    return JSONResponse(body, status_code=code)


def _permission_of(dependant: Dependant) -> str | None:
    """The permission a route's dependencies require (``relance.deps.require``), if any."""
    for dep in dependant.dependencies:
        found = getattr(dep.call, "permission", None) or _permission_of(dep)
        if found:
            return str(found)
    return None


def route_permissions(app: FastAPI) -> dict[tuple[str, str], str]:
    """``(METHOD, path)`` -> the permission it needs, for every route that needs one."""
    out = {}
    # Included routers are resolved lazily: their routes are reached through their contexts.
    for route in iter_route_contexts(app.routes):
        dependant = getattr(route, "dependant", None)
        if not isinstance(route.original_route, APIRoute) or not isinstance(dependant, Dependant):
            continue
        if needed := _permission_of(dependant):
            for method in route.methods or ():
                out[(method, str(route.path_format))] = needed
    return out


def _openapi_with_permissions(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI, each operation naming its permission (``x-permission``) and its 403."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for (method, path), needed in route_permissions(app).items():
            operation = schema["paths"][path][method.lower()]
            operation["x-permission"] = needed
            operation["description"] = (
                operation.get("description", "") + f"\n\nNeeds the permission `{needed}`."
            ).strip()
            operation["responses"].setdefault(
                "403",
                {
                    "description": f"The role lacks the permission '{needed}'",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}
                    },
                },
            )
        _one_error_shape(schema)
        app.openapi_schema = schema
    return app.openapi_schema


# How ``relance api`` runs uvicorn (the bench's bare-HMAC limit runs with the same).
# Room for a request line with two lists of 500 ids (the schema's bound): past h11's default
# 16 KiB, uvicorn answers a bare text/plain 400 before the app can say why.
MAX_REQUEST_HEAD_BYTES = 64 * 1024
SERVER_OPTIONS: dict[str, Any] = {
    "log_config": None,  # ours (relance.logs): libraries at WARNING unless LOG_LEVEL=DEBUG
    "access_log": False,
    "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
}


def _one_error_shape(schema: dict[str, Any]) -> None:
    """Every error response names the one shape (``ErrorOut``), FastAPI's own 422 included."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            unprocessable = operation.get("responses", {}).get("422")
            if unprocessable is not None:
                unprocessable["content"] = error
                unprocessable["description"] = (
                    "Invalid input, or a query parameter the route does not take: "
                    "the detail names each field"
                )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="relance",
        version=__version__,
        description="Two-step WhatsApp campaigns that finish by themselves.",
    )

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(error_body(exc.detail), status_code=exc.status_code)

    @app.exception_handler(WebhookRejected)
    async def _webhook_rejected(_: Request, exc: WebhookRejected) -> JSONResponse:
        return JSONResponse(error_body(exc.detail), status_code=exc.status_code)

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
    app.add_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False)
    for router in ROUTERS:
        # The JSON API refuses query parameters it does not take; pages and webhooks do not
        # (providers add their own, a page's links may carry a hint).
        strict = [Depends(known_query_only)] if router not in LENIENT else []
        app.include_router(router, responses=ERROR_RESPONSES, dependencies=strict)
    app.add_middleware(Gate, settings=settings)
    # Outermost: it counts the gate's refusals too.
    app.add_middleware(RequestMetrics, settings=settings)
    app.openapi = lambda: _openapi_with_permissions(app)  # type: ignore[method-assign]
    return app
