"""The dashboard's account pages: API keys (everyone's own), users and the audit log (admins).

Server-rendered; the keys and users pages' script then calls the JSON API with the cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from relance.accounts import audit, keys, sessions, users
from relance.accounts.roles import RANK, Permission, Role
from relance.config import get_settings
from relance.contacts.schemas import MAX_ID
from relance.deps import DbSession
from relance.web.render import page
from relance.web.session import SignedIn, refusal

router = APIRouter(include_in_schema=False)


@router.get("/keys")
def keys_page(request: Request, session: DbSession, who: SignedIn) -> Response:
    if refused := refusal(request, who, Permission.OWN_KEYS):
        return refused
    assert who is not None
    everyone = who.can(Permission.MANAGE_KEYS)
    rows = keys.list_keys(session, None if everyone else who.user_id)
    context = {
        "active": "keys",
        "keys": rows,
        "everyone": everyone,
        "roles": [r.value for r in Role if RANK[r] <= RANK[who.role]],
        "owners": users.list_users(session) if everyone else [],
    }
    return page(request, "keys.html", context)


@router.get("/users")
def users_page(request: Request, session: DbSession, who: SignedIn) -> Response:
    if refused := refusal(request, who, Permission.MANAGE_USERS):
        return refused
    assert who is not None
    counts = sessions.open_counts(session, get_settings())
    context = {
        "active": "users",
        "users": [(u, counts.get(u.id, 0)) for u in users.list_users(session)],
        "roles": [r.value for r in Role],
    }
    return page(request, "users.html", context)


@router.get("/audit")
def audit_page(
    request: Request,
    session: DbSession,
    who: SignedIn,
    actor: Annotated[str, Query(max_length=40)] = "",
    action: Annotated[str, Query(max_length=60)] = "",
    target: Annotated[str, Query(max_length=200)] = "",
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> Response:
    if refused := refusal(request, who, Permission.READ_AUDIT):
        return refused
    assert who is not None
    filters = {"actor": actor.strip(), "action": action.strip(), "target": target.strip()}
    rows, cursor = audit.events(
        session,
        actor=filters["actor"] or None,
        action=filters["action"] or None,
        target=filters["target"] or None,
        before=before,
    )
    older = {**{k: v for k, v in filters.items() if v}, "before": cursor} if cursor else None
    context = {"active": "audit", "events": rows, "older": older, **filters}
    return page(request, "audit.html", context)
