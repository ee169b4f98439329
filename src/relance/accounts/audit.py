"""The audit log: who did what, to what, when, from which address. Appended, never edited."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.accounts.principal import Principal
from relance.models import AuditEvent

ANONYMOUS = "anonymous"


def record(
    session: Session,
    who: Principal | None,
    action: str,
    target: str = "",
    address: str = "",
    label: str = "",
    **detail: Any,
) -> None:
    """Append one event to the caller's transaction: it stands or falls with what it records.

    ``who`` None is an anonymous client (a failed sign-in: ``label`` says which email)."""
    session.add(
        AuditEvent(
            actor=who.actor if who else ANONYMOUS,
            actor_label=(who.label if who else label)[:400],
            user_id=who.user_id if who else None,
            action=action[:60],
            target=target[:200],
            address=address[:64],
            detail=detail,
        )
    )


def events(
    session: Session,
    actor: str | None = None,
    user_id: int | None = None,
    action: str | None = None,
    target: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[AuditEvent], int | None]:
    """The newest events first (keyset on id), filtered by actor (``user:3``, ``key:7``), by the
    person behind them (a user's own actions and their keys'), action and target; and the
    cursor of the next page, or None."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if actor:
        query = query.where(AuditEvent.actor == actor)
    if user_id is not None:
        query = query.where(AuditEvent.user_id == user_id)
    if action:
        query = query.where(AuditEvent.action == action)
    if target:
        query = query.where(AuditEvent.target == target)
    if before is not None:
        query = query.where(AuditEvent.id < before)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)
