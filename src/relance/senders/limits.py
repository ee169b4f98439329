"""Meta's messaging limit of one sender's business portfolio, read at claim time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from relance.config import Settings
from relance.db import is_postgresql
from relance.senders.domain import LimitRoom, messaging_room
from relance.senders.identity import SenderInfo
from relance.senders.usage import members, window_sends


def limit_of(sender: SenderInfo, settings: Settings) -> int:
    """The sender's limit, else MESSAGING_LIMIT; 0: none."""
    return sender.messaging_limit or settings.messaging_limit


def limit_room(session: Session, sender: SenderInfo, limit: int, now: datetime) -> LimitRoom:
    """Room for new users now, over every sender of the portfolio (Meta counts them together),
    their rows locked until the claim commits. SQLite has one writer: no lock needed."""
    stored = members(session, sender.portfolio, lock=is_postgresql(session))
    opened = [at for _, at in window_sends(session, stored, now)]
    return messaging_room(limit, opened, now)
