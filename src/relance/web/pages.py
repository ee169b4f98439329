"""The dashboard: server-rendered pages, sign-in by API key cookie, and two JSON helpers.

The pages render with Jinja2 (autoescaped) and a little vanilla JavaScript that calls the
JSON API with the ``relance_api_key`` cookie set here (HttpOnly, SameSite=Lax), so
``fetch()`` and ``EventSource`` are authenticated without the page ever reading the key.
No build step and nothing from a CDN: the CSS and JS are the files of ``web/static``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from relance.api import DbSession, require_api_key
from relance.auth import find_api_key
from relance.campaigns import drafts, service
from relance.campaigns.domain import CampaignStatus, MessageKind
from relance.campaigns.texts import (
    DEFAULT_VALUE_MAX,
    TEMPLATE_PARAMETER_MAX,
    TEMPLATE_PARAMETERS_MAX,
    TEXT_MAX,
    campaign_texts,
)
from relance.config import get_settings
from relance.contacts import service as contacts
from relance.contacts.domain import (
    contact_values,
    missing_placeholders,
    render_within,
    valid_template,
)
from relance.contacts.schemas import MAX_ID, MAX_IDS
from relance.errors import NotFound
from relance.gate import API_KEY_COOKIE
from relance.models import Contact, Message, contact_categories

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"
templates = Jinja2Templates(directory=str(WEB_DIR / "templates"))

PAGE_SIZE = 50
COOKIE_MAX_AGE = 30 * 86400
TIMELINE_MAX_MINUTES = 120
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
STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
STATUS_FILTERS = [s.value for s in CampaignStatus]

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api", tags=["dashboard"], dependencies=[Depends(require_api_key)])

CampaignId = Annotated[int, PathParam(ge=1, le=MAX_ID)]
PageNumber = Annotated[int, Query(ge=1, le=10**6)]


# Jinja filters -------------------------------------------------------------------------


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


def percent(part: int, whole: int) -> int:
    return math.floor(100 * part / whole) if whole else 0


templates.env.filters.update(iso=iso, short_time=short_time, duration=duration)
templates.env.globals.update(percent=percent)


# Sign-in -------------------------------------------------------------------------------


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


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=SECURITY_HEADERS
    )


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


# Pages ---------------------------------------------------------------------------------


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


@router.get("/")
def campaigns_page(
    request: Request,
    session: DbSession,
    is_signed_in: SignedIn,
    status: str = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
) -> Response:
    if not is_signed_in:
        return to_login(request)
    status = status if status in STATUS_FILTERS else ""
    items, total = drafts.list_campaigns(
        session, PAGE_SIZE, (page_number - 1) * PAGE_SIZE, status or None
    )
    context = {
        "active": "campaigns",
        "campaigns": [
            {"campaign": drafts.campaign_out(session, c), "stats": service.campaign_stats(c)}
            for c in items
        ],
        "total": total,
        "status": status,
        "statuses": STATUS_FILTERS,
        "page_number": page_number,
        "pages": _pages(total),
    }
    return page(request, "campaigns.html", context)


def _all_categories(session: Session) -> list[dict[str, Any]]:
    rows, _ = contacts.list_categories(session, limit=1000, offset=0)
    return [{"id": c.id, "name": c.name, "contact_count": n} for c, n in rows]


@router.get("/campaigns/new")
def new_campaign_page(request: Request, session: DbSession, is_signed_in: SignedIn) -> Response:
    if not is_signed_in:
        return to_login(request)
    window = get_settings().reply_window_seconds
    unit = next(u for u in (86400, 3600, 60, 1) if window % u == 0)
    context = {
        "active": "new",
        "categories": _all_categories(session),
        "window_value": window // unit,
        "window_unit": unit,
    }
    return page(request, "campaign_new.html", context)


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, campaign_id: CampaignId, session: DbSession, is_signed_in: SignedIn
) -> Response:
    if not is_signed_in:
        return to_login(request)
    try:
        campaign = service.get_campaign(session, campaign_id)
    except NotFound:
        return page(request, "not_found.html", {"what": f"Campaign {campaign_id}"}, 404)
    names = {c["id"]: c["name"] for c in _all_categories(session)}
    out = drafts.campaign_out(session, campaign)
    context = {
        "active": "campaigns",
        "campaign": out,
        "stats": service.campaign_stats(campaign),
        "category_names": [names.get(i, f"#{i}") for i in out["category_ids"]],
    }
    return page(request, "campaign.html", context)


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() and 1 <= int(text) <= MAX_ID else None


@router.get("/contacts")
def contacts_page(
    request: Request,
    session: DbSession,
    is_signed_in: SignedIn,
    q: Annotated[str, Query(max_length=200)] = "",
    category: Annotated[str, Query(max_length=20)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
) -> Response:
    """Contacts with search, category filter and pages; ``category=`` (All) is no filter."""
    if not is_signed_in:
        return to_login(request)
    q = q.replace("\x00", "").strip()
    category_id = _int_or_none(category)
    items, total = contacts.list_contacts(
        session,
        get_settings(),
        limit=PAGE_SIZE,
        offset=(page_number - 1) * PAGE_SIZE,
        category_id=category_id,
        search=q or None,
    )
    categories = _all_categories(session)
    names = {c["id"]: c["name"] for c in categories}
    links = contacts.category_ids_of(session, items)
    rows = [
        {
            "contact": c,
            "categories": [names.get(i, f"#{i}") for i in links[c.id]],
            "attributes": ", ".join(f"{k}: {v}" for k, v in sorted(c.attributes.items())),
        }
        for c in items
    ]
    filters = {"q": q, "category": str(category_id or "")}
    context = {
        "active": "contacts",
        "rows": rows,
        "total": total,
        "categories": categories,
        "q": q,
        "category_id": category_id,
        "page_number": page_number,
        "pages": _pages(total),
        "query": lambda n: urlencode({**{k: v for k, v in filters.items() if v}, "page": n}),
    }
    return page(request, "contacts.html", context)


# JSON helpers of the pages (under the /api key check like every other /api route) ------


class Bucket(BaseModel):
    start: datetime
    message_1: int
    message_2: int


class Timeline(BaseModel):
    campaign_id: int
    bucket_seconds: int = 60
    buckets: list[Bucket]


def _minute_of_sent_at(session: Session) -> ColumnElement[str]:
    """``YYYY-MM-DD HH:MM`` of ``messages.sent_at`` in UTC, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M", Message.sent_at)
    return func.to_char(func.timezone("UTC", Message.sent_at), "YYYY-MM-DD HH24:MI")


@api.get("/campaigns/{campaign_id}/timeline", response_model=Timeline)
def timeline(campaign_id: CampaignId, session: DbSession) -> dict[str, Any]:
    """Messages sent per minute (last two hours with sends), for the campaign page's chart."""
    service.get_campaign(session, campaign_id)
    minute = _minute_of_sent_at(session).label("minute")
    rows = session.execute(
        select(minute, Message.kind, func.count())
        .where(Message.campaign_id == campaign_id, Message.sent_at.is_not(None))
        .group_by(minute, Message.kind)
    ).all()
    counts: dict[datetime, dict[str, int]] = {}
    for text, kind, n in rows:
        start = datetime.strptime(str(text), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        counts.setdefault(start, {})[str(kind)] = int(n)
    if not counts:
        return {"campaign_id": campaign_id, "buckets": []}
    last = max(counts)
    first = max(min(counts), last - timedelta(minutes=TIMELINE_MAX_MINUTES - 1))
    buckets = []
    at = first
    while at <= last:  # every minute, the silent ones too, so the bars keep their scale
        row = counts.get(at, {})
        buckets.append(
            {
                "start": at,
                "message_1": row.get(MessageKind.MESSAGE_1.value, 0),
                "message_2": row.get(MessageKind.MESSAGE_2.value, 0),
            }
        )
        at += timedelta(minutes=1)
    return {"campaign_id": campaign_id, "buckets": buckets}


class PreviewIn(BaseModel):
    message_1: str = Field(default="", max_length=TEXT_MAX)
    message_2: str | None = Field(default=None, max_length=TEXT_MAX)
    template_parameters: list[Annotated[str, Field(max_length=TEMPLATE_PARAMETER_MAX)]] = Field(
        default_factory=list, max_length=TEMPLATE_PARAMETERS_MAX
    )
    category_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(
        default_factory=list, max_length=MAX_IDS
    )
    placeholder_defaults: dict[
        Annotated[str, Field(max_length=100)], Annotated[str, Field(max_length=DEFAULT_VALUE_MAX)]
    ] = Field(default_factory=dict, max_length=100)


class SampleContact(BaseModel):
    id: int
    phone: str
    first_name: str
    last_name: str


class PreviewOut(BaseModel):
    contact: SampleContact | None
    message_1: str | None
    message_2: str | None
    template_parameters: list[str]
    missing: list[str]
    errors: dict[str, str]


def _sample_contact(session: Session, category_ids: Sequence[int]) -> Contact | None:
    """The first reachable contact of the categories: the one the preview is written for."""
    if not category_ids:
        return None
    links = contact_categories.c
    return session.scalar(
        select(Contact)
        .where(
            Contact.opted_out_at.is_(None),
            exists().where(
                links.contact_id == Contact.id, links.category_id.in_(sorted(set(category_ids)))
            ),
        )
        .order_by(Contact.id)
        .limit(1)
    )


@api.post("/preview", response_model=PreviewOut)
def preview(data: PreviewIn, session: DbSession) -> dict[str, Any]:
    """The messages as the first contact of the chosen categories would read them."""
    contact = _sample_contact(session, data.category_ids)
    values = (
        contact_values(contact.first_name, contact.last_name, contact.attributes or {})
        if contact
        else {}
    )
    defaults = data.placeholder_defaults
    errors: dict[str, str] = {}
    missing: set[str] = set()
    shown: dict[str, str | None] = {}
    template = {"parameters": data.template_parameters}
    for text in campaign_texts(data.message_1, data.message_2, template):
        field = text.field.replace("message_1_template.parameters", "template_parameters")
        problem = valid_template(text.text)
        if problem:
            errors[field] = problem
            shown[field] = None
            continue
        missing |= missing_placeholders(text.text, {**defaults, **values})
        # Cut at the limit: a long attribute in many placeholders must not build megabytes.
        shown[field], length = render_within(text.text, values, defaults, text.limit)
        if length > text.limit:
            errors[field] = (
                f"too long once personalised for this contact: {length:,} characters; "
                f"{text.limited_by} allows {text.limit:,}"
            )
    parameters = [
        shown[f"template_parameters.{i}"] or "" for i in range(len(data.template_parameters))
    ]
    sample = (
        SampleContact(
            id=contact.id,
            phone=contact.phone,
            first_name=contact.first_name,
            last_name=contact.last_name,
        )
        if contact
        else None
    )
    return {
        "contact": sample,
        "message_1": shown["message_1"],
        "message_2": shown.get("message_2"),
        "template_parameters": parameters,
        "missing": sorted(missing),
        "errors": errors,
    }


router.include_router(api)
