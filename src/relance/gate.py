"""The front door of every HTTP request, before any route reads a byte of its body.

In this order:

1. a write carried by the session cookie alone must come from relance's own origin
   (``relance.origins``): 403 otherwise;
2. every ``/api`` request needs a valid API key (``Authorization: Bearer``) or the session of a
   signed-in user (the dashboard's cookie): 401 otherwise, so an anonymous client never gets to
   send a body that is parsed. Who it is (``accounts.principal.Principal``) goes to the routes,
   which check its role against the permission they need;
3. a body over ``MAX_BODY_BYTES`` (``MAX_IMPORT_BYTES`` for the CSV import) is refused with 413,
   by its ``Content-Length`` before it is read, and while it streams in (a chunked body has none).

FastAPI reads and parses a route's body before it resolves the route's dependencies, so these
checks cannot be dependencies. Starlette's ``RequestBodyLimitMiddleware`` answers some of its
refusals in plain text; every error of relance's API is ``{"detail": ...}``.
"""

from __future__ import annotations

import json
from typing import Any

from anyio import to_thread
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from relance.config import Settings
from relance.origins import allowed_origins, cross_site_refusal

SESSION_COOKIE = "relance_session"  # relance.accounts.sessions.COOKIE
IMPORT_PATH = "/api/contacts/import"
STATE_PRINCIPAL = "principal"
MISSING_KEY = (
    "not signed in: send Authorization: Bearer <key> (relance apikey create), "
    "or sign in to the dashboard"
)


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes its limit."""


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def cookie_value(headers: Headers, name: str) -> str | None:
    """The cookie as ``request.cookies`` would read it (Starlette's lenient parser)."""
    return cookie_parser(headers.get("cookie", "")).get(name)


def lookup_principal(settings: Settings, key: str | None, session_id: str | None) -> Any:
    """Who an API key (first) or a session cookie acts as, or None (a short transaction)."""
    from relance.accounts import sessions
    from relance.accounts.keys import find_api_key
    from relance.db import session_scope

    with session_scope(settings) as session:
        if key:
            return find_api_key(session, key)
        if session_id:
            return sessions.resolve(session, settings, session_id)
        return None


async def send_json(send: Send, status: int, body: dict[str, Any], **headers: str) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((name.replace("_", "-").encode(), value.encode()) for name, value in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


class Gate:
    """ASGI middleware: cross-site writes, API keys, then body limits (module docstring)."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.origins = allowed_origins(settings.effective_public_url)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        bearer = bearer_token(headers)
        cookie = cookie_value(headers, SESSION_COOKIE)
        api = is_api_path(path)
        # Webhooks are signed, /metrics has its own token: neither carries an API key.
        own_auth = path.startswith("/webhooks/") or path == "/metrics"
        if bearer is None and not own_auth and (cookie or not api):
            refusal = cross_site_refusal(scope["method"], headers, self.origins)
            if refusal is not None:
                await send_json(send, 403, {"detail": refusal})
                return
        if (bearer or cookie) and not own_auth and not path.startswith("/static/"):
            principal = await to_thread.run_sync(lookup_principal, self.settings, bearer, cookie)
            scope.setdefault("state", {})[STATE_PRINCIPAL] = principal
            if api and principal is None:
                why = "invalid API key" if bearer else "session ended: sign in again"
                await _unauthorized(send, why)
                return
        elif api:
            await _unauthorized(send, MISSING_KEY)
            return
        if path == IMPORT_PATH:
            limit, setting = self.settings.max_import_bytes, "MAX_IMPORT_BYTES"
        else:
            limit, setting = self.settings.max_body_bytes, "MAX_BODY_BYTES"
        await self._limited(scope, receive, send, headers, limit, setting)

    async def _limited(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, limit: int, setting: str
    ) -> None:
        refusal = {"detail": f"request body larger than {limit} bytes ({setting})"}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await send_json(send, 413, refusal, connection="close")
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the route made of a body cut short, the answer is the 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await send_json(send, 413, refusal, connection="close")


async def _unauthorized(send: Send, detail: str) -> None:
    await send_json(send, 401, {"detail": detail}, www_authenticate="Bearer")
