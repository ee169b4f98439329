"""Signing in to the dashboard by email and password, signing out, and its static files.

The session cookie (HttpOnly, SameSite=Lax, Secure when ``PUBLIC_URL`` is https) holds a random
id; the server keeps the session (``accounts.sessions``), so signing out, an admin, or its expiry
ends it for good. ``fetch()`` and ``EventSource`` send it without the page ever reading it; writes
carried by the cookie must come from relance's own origin (``relance.gate``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from relance.accounts import audit, sessions
from relance.accounts.principal import Principal
from relance.accounts.roles import Permission, Role
from relance.accounts.signin import TooManyAttempts, authenticate
from relance.config import get_settings
from relance.deps import Address, DbSession
from relance.gate import SESSION_COOKIE, STATE_PRINCIPAL
from relance.web.render import STATIC_DIR, forbidden, page

STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

router = APIRouter(include_in_schema=False)


def signed_in(request: Request) -> Principal | None:
    """Who the session cookie signs in (``relance.gate`` resolved it), or None."""
    principal = getattr(request.state, STATE_PRINCIPAL, None)
    return principal if isinstance(principal, Principal) else None


SignedIn = Annotated[Principal | None, Depends(signed_in)]


def safe_next(target: str | None) -> str:
    """Only a path of this site: an open redirect to another host would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': here})}", status_code=303)


def refusal(request: Request, who: Principal | None, permission: Permission) -> Response | None:
    """What a page answers instead of itself: sign in first, or the 403 page; None: go on."""
    if who is None:
        return to_login(request)
    if not who.can(permission):
        return forbidden(request, who, permission)
    return None


@router.get("/login")
def login_form(request: Request, who: SignedIn, next: str = "/") -> Response:
    if who is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return page(request, "login.html", {"next": safe_next(next), "error": None, "email": ""})


@router.post("/login")
def login(
    request: Request,
    session: DbSession,
    address: Address,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the email and password; open a session and keep its id in an HttpOnly cookie."""
    settings = get_settings()
    context = {"next": safe_next(next), "email": email.strip()[:320]}
    try:
        user = authenticate(session, email, password, address)
    except TooManyAttempts as exc:
        wait = exc.retry_at.strftime("%H:%M:%S UTC")
        error = f"Too many failed sign-ins: try again after {wait}."
        return page(request, "login.html", {**context, "error": error}, status_code=429)
    if user is None:
        audit.record(session, None, "login.failure", address=address, label=email.strip()[:320])
        error = "This email and password do not match an account."
        return page(request, "login.html", {**context, "error": error}, status_code=401)
    agent = request.headers.get("user-agent", "")
    token = sessions.open_session(session, settings, user, address, agent)
    who = Principal(user.id, Role(user.role), f"user:{user.id}", user.email)
    audit.record(session, who, "login.success", f"user:{user.id}", address)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=settings.session_max_seconds,
        httponly=True,
        samesite="lax",
        # The scheme uvicorn sees is http behind a TLS proxy: PUBLIC_URL says what browsers use.
        secure=settings.public_url_is_https,
        path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, session: DbSession, who: SignedIn, address: Address) -> Response:
    """End the session on the server, not only in this browser."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        sessions.close(session, token)
    if who is not None:
        audit.record(session, who, "logout", f"user:{who.user_id}", address)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=get_settings().public_url_is_https,
    )
    return response


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    """The dashboard's own CSS, JS and icon (a flat folder; no path ever leaves it)."""
    suffix = Path(name).suffix
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*\.[a-z]+", name) or suffix not in STATIC_TYPES:
        return Response("not found", status_code=404, media_type="text/plain")
    path = STATIC_DIR / name
    if not path.is_file():
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        path,
        media_type=STATIC_TYPES[suffix],
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
