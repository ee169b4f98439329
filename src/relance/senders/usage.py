"""How much of its messaging limit each sender used over the moving 24 hours.

Meta counts unique users messaged outside their 24 h service window. relance counts each
recipient whose Message 1 left (or is leaving) a sender in the last 24 h, whatever its
window: a Message 1 opens the conversation, and counting a few too many can only make
relance wait early, never send past the limit. Message 2s answer a reply (inside the
window): never counted. ``ix_messages_sender_window`` keeps the count a range scan.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, literal, select
from sqlalchemy.orm import Session

from relance.campaigns.domain import MessageKind, MessageStatus
from relance.models import Message, utcnow

WINDOW = timedelta(hours=24)


def _m1() -> list[ColumnElement[bool]]:
    return [
        Message.kind == literal(MessageKind.MESSAGE_1.value, literal_execute=True),
        Message.status != MessageStatus.FAILED.value,
    ]


def limit_used(
    session: Session,
    sender_ids: Sequence[int],
    default_ids: Sequence[int] = (),
    now: datetime | None = None,
) -> dict[int, int]:
    """Unique recipients messaged by each sender over the moving 24 h (NULL: the default's)."""
    since = (now or utcnow()) - WINDOW
    rows = session.execute(
        select(Message.sender_id, func.count(func.distinct(Message.recipient_id)))
        .where(*_m1(), Message.created_at > since)
        .group_by(Message.sender_id)
    )
    counts = {sender_id: n for sender_id, n in rows}
    out = {sid: counts.get(sid, 0) for sender_ids_ in (sender_ids,) for sid in sender_ids_}
    for sid in default_ids:
        out[sid] = counts.get(None, 0) + counts.get(sid, 0)
    return out


def window_sends(
    session: Session, stored_id: int | None, now: datetime
) -> list[tuple[int, datetime]]:
    """(recipient, first Message 1 time) of one sender inside the moving 24 h, oldest first."""
    rows = session.execute(
        select(Message.recipient_id, func.min(Message.created_at))
        .where(*_m1(), Message.sender_id == stored_id, Message.created_at > now - WINDOW)
        .group_by(Message.recipient_id)
        .order_by(func.min(Message.created_at))
    )
    return [(recipient, at) for recipient, at in rows]
