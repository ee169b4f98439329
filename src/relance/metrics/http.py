"""``/metrics`` over HTTP, and the count of every HTTP request the API answers.

Who may scrape: with ``METRICS_TOKEN`` set, whoever sends it as ``Authorization: Bearer`` to
the API's ``/metrics`` (compared in constant time; 401 otherwise). Without it the API answers
404, and the metrics are served only on ``METRICS_HOST:METRICS_PORT`` when that is set: a port
of its own, meant for a private network, started by ``relance api``.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from anyio import to_thread
from prometheus_client import CONTENT_TYPE_LATEST, start_http_server
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relance.config import Settings
from relance.gate import bearer_token
from relance.metrics.recorder import HTTP_DURATION, HTTP_REQUESTS, recorder
from relance.metrics.scrape import registry_for, render

METRICS_PATH = "/metrics"
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def token_matches(settings: Settings, headers: Headers) -> bool:
    """Is the request's bearer token METRICS_TOKEN? (constant time: no timing oracle)"""
    given = (bearer_token(headers) or "").encode()
    return bool(settings.metrics_token) and hmac.compare_digest(
        given, settings.metrics_token.encode()
    )


async def metrics_endpoint(request: Request) -> Response:
    """The Prometheus text format, behind METRICS_TOKEN; 404 when no token is set."""
    settings: Settings = request.app.state.settings
    if not settings.metrics_token:
        return JSONResponse({"detail": "Not Found"}, status_code=404)
    if not token_matches(settings, request.headers):
        return JSONResponse(
            {"detail": "send METRICS_TOKEN as Authorization: Bearer <token>"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    body = await to_thread.run_sync(render, settings)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def serve_privately(settings: Settings) -> Any:
    """Serve /metrics on METRICS_HOST:METRICS_PORT (no token) in a thread, if the port is set."""
    if settings.metrics_port is None:
        return None
    return start_http_server(
        settings.metrics_port, addr=settings.metrics_host, registry=registry_for(settings)
    )


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/api/campaigns/{campaign_id}``): a bounded label.

    A request refused before routing (the gate's 401, 403, 413), or matching no route, is
    ``unmatched``: raw paths would let any client mint new series."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(template) if template else "unmatched"


class RequestMetrics:
    """ASGI middleware: counts each request by method, route template and status, times it,
    and adds this process's counts to the database at most every few seconds."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            method = scope["method"] if scope["method"] in METHODS else "other"
            route = route_template(scope)
            recorder.inc(HTTP_REQUESTS, method=method, route=route, status=status)
            recorder.observe(
                HTTP_DURATION, time.perf_counter() - started, method=method, route=route
            )
        if recorder.due():
            await to_thread.run_sync(recorder.flush_if_due, self.settings)
