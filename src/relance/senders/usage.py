"""How much of its messaging limit each business portfolio used over the moving 24 hours.

Meta counts unique users messaged outside their 24 h service window, per business portfolio:
every number of a portfolio draws on one count. relance counts each recipient whose Message 1
left (or is leaving) one of the portfolio's senders in the last 24 h, whatever its window: a
Message 1 opens the conversation, and counting a few too many can only make relance wait
early, never send past the limit. Message 2s answer a reply (inside the window): never
counted. A recipient is served by one sender, so a portfolio's count is the sum of its
senders'. ``ix_messages_sender_window`` keeps each count a range scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, literal, or_, select
from sqlalchemy.orm import Session

from relance.campaigns.domain import MessageKind, MessageStatus
from relance.models import Message, Sender, utcnow

WINDOW = timedelta(hours=24)
Stored = int | None  # what messages hold: a sender's id, NULL for the default sender


def _m1() -> list[ColumnElement[bool]]:
    return [
        Message.kind == literal(MessageKind.MESSAGE_1.value, literal_execute=True),
        Message.status != MessageStatus.FAILED.value,
    ]


def portfolio_key(portfolio: str | None) -> str:
    """Senders without a portfolio share the install's one ("")."""
    return portfolio or ""


def members(session: Session, portfolio: str, lock: bool = False) -> list[Stored]:
    """The senders of a portfolio, as messages name them; ``lock``: their rows locked until
    the transaction ends, in id order (two dispatchers of one portfolio must not both take
    its last place; the order keeps two lockers from deadlocking)."""
    query = (
        select(Sender.id, Sender.is_default)
        .where(func.coalesce(Sender.portfolio, "") == portfolio)
        .order_by(Sender.id)
    )
    if lock:
        query = query.with_for_update()
    return [None if is_default else sender_id for sender_id, is_default in session.execute(query)]


def _of(stored: Sequence[Stored]) -> ColumnElement[bool]:
    ids = [s for s in stored if s is not None]
    terms = [Message.sender_id.in_(ids)] if ids else []
    if None in stored:
        terms.append(Message.sender_id.is_(None))
    return or_(*terms) if terms else literal(False)


def limit_used(session: Session, now: datetime | None = None) -> dict[int, int]:
    """Each sender's portfolio's unique recipients over the moving 24 h, by sender id."""
    since = (now or utcnow()) - WINDOW
    counts = dict(
        session.execute(
            select(Message.sender_id, func.count(func.distinct(Message.recipient_id)))
            .where(*_m1(), Message.created_at > since)
            .group_by(Message.sender_id)
        ).all()
    )
    senders = session.execute(select(Sender.id, Sender.is_default, Sender.portfolio)).all()
    totals: dict[str, int] = {}
    for sender_id, is_default, portfolio in senders:
        own = counts.get(None, 0) if is_default else 0
        key = portfolio_key(portfolio)
        totals[key] = totals.get(key, 0) + own + counts.get(sender_id, 0)
    return {sender_id: totals[portfolio_key(p)] for sender_id, _, p in senders}


def window_sends(
    session: Session, stored: Sequence[Stored], now: datetime
) -> list[tuple[int, datetime]]:
    """(recipient, first Message 1 time) of these senders inside the moving 24 h, oldest
    first."""
    rows = session.execute(
        select(Message.recipient_id, func.min(Message.created_at))
        .where(*_m1(), _of(stored), Message.created_at > now - WINDOW)
        .group_by(Message.recipient_id)
        .order_by(func.min(Message.created_at))
    )
    return [(recipient, at) for recipient, at in rows]
