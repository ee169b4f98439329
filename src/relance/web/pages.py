"""The dashboard's pages: campaigns, a new campaign, one campaign, contacts.

Server-rendered; each page's script then calls the JSON API with the session cookie.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from sqlalchemy.orm import Session

from relance.accounts.roles import Permission
from relance.campaigns import queries, results
from relance.campaigns.domain import CampaignStatus, OptSource, RecipientState
from relance.config import get_settings
from relance.contacts import service as contacts
from relance.contacts.schemas import MAX_ID
from relance.deps import DbSession
from relance.errors import NotFound
from relance.models import utcnow
from relance.web.render import page
from relance.web.session import SignedIn, refusal, to_login

PAGE_SIZE = 50
STATUS_FILTERS = [s.value for s in CampaignStatus]

router = APIRouter(include_in_schema=False)

CampaignId = Annotated[int, PathParam(ge=1, le=MAX_ID)]


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
    items, total = queries.list_campaigns(
        session, PAGE_SIZE, (page_number - 1) * PAGE_SIZE, status or None
    )
    context = {
        "active": "campaigns",
        "campaigns": [
            {"campaign": queries.campaign_out(session, c), "stats": queries.campaign_stats(c)}
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
    if refused := refusal(request, is_signed_in, Permission.MANAGE_CAMPAIGNS):
        return refused
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
        campaign = queries.get_campaign(session, campaign_id)
    except NotFound:
        return page(request, "not_found.html", {"what": f"Campaign {campaign_id}"}, 404)
    names = {c["id"]: c["name"] for c in _all_categories(session)}
    out = queries.campaign_out(session, campaign)
    stats = queries.campaign_stats(campaign)
    stats["rates"] = results.campaign_rates(campaign)
    stats["reply_time"] = results.reply_times(session, campaign)
    stats["estimated_finish_at"] = results.finish_estimate(
        session, get_settings(), campaign, utcnow()
    )
    context = {
        "active": "campaigns",
        "campaign": out,
        "stats": stats,
        "category_names": [names.get(i, f"#{i}") for i in out["category_ids"]],
        "recipient_states": RECIPIENT_STATES,
        "recipient_sorts": RECIPIENT_SORTS,
    }
    return page(request, "campaign.html", context)


# The recipients table's filters: every state, the limited ones by their code.
RECIPIENT_STATES = [(s.value, s.value.replace("_", " ")) for s in RecipientState]
RECIPIENT_SORTS = [
    ("id", "In sending order"),
    ("-replied_at", "Latest answers first"),
    ("replied_at", "Earliest answers first"),
    ("-failed_at", "Latest failures first"),
    ("-awaiting_reply_at", "Latest Message 1 first"),
    ("-message_2_sent_at", "Latest Message 2 first"),
    ("-no_interaction_at", "Latest windows closed first"),
]


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() and 1 <= int(text) <= MAX_ID else None


# What each opt-out or opt-in came from (OptSource), as the contacts page says it.
OPT_SOURCES: dict[str, str] = {
    OptSource.KEYWORD: "STOP keyword",
    OptSource.BUTTON: "Stop promotions button",
    OptSource.PREFERENCE: "WhatsApp setting",
    OptSource.API: "API",
    OptSource.SEND_ERROR: "WhatsApp refusing a send",
}


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
    query = contacts.ContactQuery(PAGE_SIZE, (page_number - 1) * PAGE_SIZE, category_id, q or None)
    items, total = contacts.list_contacts(session, get_settings(), query)
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
        "opt_sources": OPT_SOURCES,
    }
    return page(request, "contacts.html", context)
