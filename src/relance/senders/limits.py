"""Meta's messaging limit of one sender, read from the database at claim time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.config import Settings
from relance.models import Sender
from relance.senders.domain import LimitRoom, messaging_room
from relance.senders.identity import SenderInfo
from relance.senders.usage import window_sends


def limit_of(sender: SenderInfo, settings: Settings) -> int:
    """The sender's limit, else MESSAGING_LIMIT; 0: none."""
    return sender.messaging_limit or settings.messaging_limit


def limit_room(session: Session, sender: SenderInfo, limit: int, now: datetime) -> LimitRoom:
    """Room for new users now, the sender's row locked until the claim commits (two
    dispatchers must not both take the last place). SQLite has one writer: no lock needed."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Sender.id).where(Sender.id == sender.id).with_for_update())
    opened = [at for _, at in window_sends(session, sender.stored_id, now)]
    return messaging_room(limit, opened, now)
