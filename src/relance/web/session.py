"""Signing in to the dashboard, and its static files.

The sign-in keeps the API key in an HttpOnly, SameSite=Lax cookie, so ``fetch()`` and
``EventSource`` are authenticated without the page ever reading the key; writes carried by
the cookie must come from relance's own origin (``relance.gate``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import FileResponse, RedirectResponse

from relance.auth import find_api_key
from relance.config import get_settings
from relance.deps import DbSession
from relance.gate import API_KEY_COOKIE
from relance.web.render import STATIC_DIR, page

COOKIE_MAX_AGE = 30 * 86400
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

router = APIRouter(include_in_schema=False)


def signed_in(request: Request, session: DbSession) -> bool:
    """True when the request carries the cookie of a stored API key."""
    key = request.cookies.get(API_KEY_COOKIE)
    return bool(key) and find_api_key(session, key or "") is not None


SignedIn = Annotated[bool, Depends(signed_in)]


def safe_next(target: str | None) -> str:
    """Only a path of this site: an open redirect to another host would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?{urlencode({'next': here})}", status_code=303)


@router.get("/login")
def login_form(request: Request, is_signed_in: SignedIn, next: str = "/") -> Response:
    if is_signed_in:
        return RedirectResponse(safe_next(next), status_code=303)
    return page(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    session: DbSession,
    api_key: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the key and keep it in an HttpOnly cookie (EventSource cannot send a header)."""
    key = api_key.strip()
    if not key or find_api_key(session, key) is None:
        error = "Enter an API key." if not key else "This API key is not valid."
        context = {"next": safe_next(next), "error": error}
        return page(request, "login.html", context, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    response.set_cookie(
        API_KEY_COOKIE,
        key,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="lax",
        # The scheme uvicorn sees is http behind a TLS proxy: PUBLIC_URL says what browsers use.
        secure=get_settings().public_url_is_https,
        path="/",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        API_KEY_COOKIE,
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
