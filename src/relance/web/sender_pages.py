"""The dashboard's Senders page: each number's quality, messaging limit used over the moving
24 h, current pace and why it holds; admins add, pause and resume numbers (through the API)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from relance.accounts.roles import Permission
from relance.config import get_settings
from relance.deps import DbSession
from relance.senders import service, usage
from relance.senders.identity import info
from relance.senders.limits import limit_of
from relance.senders.pace import rules_for
from relance.web.render import page
from relance.web.session import SignedIn, refusal

router = APIRouter(include_in_schema=False)


def pace_text(interval: float) -> str:
    """A pace as people read it: "1 every 5 s", "80/s", "unpaced"."""
    if interval <= 0:
        return "unpaced"
    if interval >= 1:
        return f"1 every {interval:g} s"
    return f"{1 / interval:.3g}/s"


@router.get("/senders")
def senders_page(request: Request, session: DbSession, who: SignedIn) -> Response:
    if refused := refusal(request, who, Permission.READ):
        return refused
    assert who is not None
    settings = get_settings()
    rows = service.list_senders(session, settings)
    used = usage.limit_used(session)
    senders: list[dict[str, Any]] = []
    for row in rows:
        one = info(row, settings)
        senders.append(
            {
                "row": row,
                "ref": one.ref,
                "provider": one.provider,
                "used": used.get(row.id, 0),
                "limit": limit_of(one, settings) or None,
                "pace": pace_text(rules_for(one, settings).interval),
            }
        )
    context = {
        "active": "senders",
        "senders": senders,
        "provider": settings.provider,
        "manage": who.can(Permission.MANAGE_SENDERS),
    }
    return page(request, "senders.html", context)
