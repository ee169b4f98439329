"""How the dashboard renders: Jinja2 templates (autoescaped), filters, security headers.

No build step and nothing from a CDN: the CSS and JS are the files of ``web/static``, and a
page may load nothing else (``Content-Security-Policy``).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.templating import Jinja2Templates

from relance.accounts.roles import Permission

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))

# Everything a page loads comes from this server: no inline script, no third party.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def iso(value: datetime | None) -> str:
    """An aware ISO 8601 time for ``<time datetime>``; the browser shows it in local time."""
    if value is None:
        return ""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def short_time(value: datetime | None) -> str:
    """The text shown before the page's script turns it into local time."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def elapsed(seconds: float) -> str:
    """A measured time, roughly: "45 s", "3 min 12 s", "2 h 5 min", "1 d 3 h"."""
    whole = round(seconds)
    for big, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "min", 60)):
        if whole >= size:
            rest = (whole % size) // small_size
            return f"{whole // size} {big}" + (f" {rest} {small}" if rest else "")
    if whole >= 60:
        return f"{whole // 60} min" + (f" {whole % 60} s" if whole % 60 else "")
    return f"{whole} s"


def percent(part: int, whole: int) -> int:
    return math.floor(100 * part / whole) if whole else 0


templates.env.filters.update(iso=iso, short_time=short_time, duration=duration, elapsed=elapsed)
templates.env.globals.update(percent=percent)


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """A page; its template knows who is signed in (``who``) and what they may do (``can``):
    the dashboard shows only the actions of the signed-in role (relance.accounts.roles)."""
    who = getattr(request.state, "principal", None)

    def can(permission: str) -> bool:
        return who is not None and bool(who.can(Permission(permission)))

    context = {"who": who, "can": can, **context}
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=SECURITY_HEADERS
    )


def forbidden(request: Request, who: Any, permission: Permission) -> Response:
    """The 403 page: which permission the page needs, which role the person has."""
    context = {"permission": permission.value, "role": str(who.role)}
    return page(request, "forbidden.html", context, status_code=403)
