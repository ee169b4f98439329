"""The dashboard's contact pages: the list (search, category and state filters, categories
managed beside it) and one contact (edit, opt out or in with its history, delete)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi import Path as PathParam
from sqlalchemy.orm import Session

from relance.accounts.roles import Permission
from relance.campaigns.domain import OptSource
from relance.config import get_settings
from relance.contacts import service as contacts
from relance.contacts.consent import opt_history
from relance.contacts.schemas import MAX_ID
from relance.deps import DbSession
from relance.errors import NotFound
from relance.web.render import page
from relance.web.session import SignedIn, refusal, to_login

PAGE_SIZE = 50
router = APIRouter(include_in_schema=False)
ContactId = Annotated[int, PathParam(ge=1, le=MAX_ID)]

# What each opt-out or opt-in came from (OptSource), as the contacts pages say it.
OPT_SOURCES: dict[str, str] = {
    OptSource.KEYWORD: "STOP keyword",
    OptSource.BUTTON: "Stop promotions button",
    OptSource.PREFERENCE: "WhatsApp setting",
    OptSource.API: "the dashboard or the API",
    OptSource.SEND_ERROR: "WhatsApp refusing a send",
}
# The state filter: the API's ``opted_out`` parameter, as the page offers it.
STATES = {"": None, "subscribed": False, "opted_out": True}


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() and 1 <= int(text) <= MAX_ID else None


def _categories(session: Session) -> list[dict[str, Any]]:
    rows, _ = contacts.list_categories(session, limit=1000, offset=0)
    return [
        {"id": c.id, "name": c.name, "description": c.description, "contact_count": n}
        for c, n in rows
    ]


@router.get("/contacts")
def contacts_page(
    request: Request,
    session: DbSession,
    is_signed_in: SignedIn,
    search: Annotated[str, Query(max_length=200)] = "",
    category: Annotated[str, Query(max_length=20)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
    page_number: Annotated[int, Query(alias="page", ge=1, le=10**6)] = 1,
) -> Response:
    """Contacts with search, category and state filters and pages; an empty value (All) is
    no filter, and so is one that names nothing."""
    if not is_signed_in:
        return to_login(request)
    search = search.replace("\x00", "").strip()
    category_id = _int_or_none(category)
    state = state if state in STATES else ""
    query = contacts.ContactQuery(
        PAGE_SIZE, (page_number - 1) * PAGE_SIZE, category_id, search or None, STATES[state]
    )
    items, total = contacts.list_contacts(session, get_settings(), query)
    categories = _categories(session)
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
    filters = {"search": search, "category": str(category_id or ""), "state": state}
    export = {"search": search, "category_id": category_id or "", "opted_out": ""}
    if STATES[state] is not None:
        export["opted_out"] = str(STATES[state]).lower()
    context = {
        "active": "contacts",
        "rows": rows,
        "total": total,
        "categories": categories,
        "search": search,
        "category_id": category_id,
        "state": state,
        "page_number": page_number,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "query": lambda n: urlencode({**{k: v for k, v in filters.items() if v}, "page": n}),
        "export_query": urlencode({k: v for k, v in export.items() if v}),
        "opt_sources": OPT_SOURCES,
    }
    return page(request, "contacts.html", context)


@router.get("/contacts/{contact_id}")
def contact_page(
    request: Request, contact_id: ContactId, session: DbSession, is_signed_in: SignedIn
) -> Response:
    if refused := refusal(request, is_signed_in, Permission.READ):
        return refused
    try:
        contact = contacts.get_contact(session, contact_id)
    except NotFound:
        return page(request, "not_found.html", {"what": f"Contact {contact_id}"}, 404)
    context = {
        "active": "contacts",
        "contact": contact,
        "category_ids": contacts.category_ids_of(session, [contact])[contact.id],
        "categories": _categories(session),
        "attributes_text": "\n".join(f"{k}={v}" for k, v in sorted(contact.attributes.items())),
        "history": opt_history(session, contact.id),
        "opt_sources": OPT_SOURCES,
    }
    return page(request, "contact.html", context)
