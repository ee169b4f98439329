"""The work a transaction leaves for later, published only after it commits.

Services never import Celery: they call ``Followups``, whose Celery implementation lives in
``relance.tasks``; tests pass a recording fake. Every call is deferred with ``db.on_commit``
so a rolled-back transaction queues nothing and a task never looks for a row not yet there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.orm import Session

from relance.db import on_commit


class Followups(Protocol):
    def send_message(self, message_id: int) -> None:
        """Send this message now (a Message 2 after a reply)."""

    def check_status(self, campaign_id: int, countdown: float) -> None:
        """``update_campaign_status.apply_async(args=[campaign_id], countdown=countdown)``."""

    def dispatch(self) -> None:
        """Wake a dispatcher: there are messages to send."""


def after_commit_send(session: Session, followups: Followups, message_id: int) -> None:
    on_commit(session, lambda: followups.send_message(message_id))


def after_commit_check(
    session: Session, followups: Followups, campaign_id: int, countdown: float
) -> None:
    on_commit(session, lambda: followups.check_status(campaign_id, countdown))


def after_commit_dispatch(session: Session, followups: Followups) -> None:
    on_commit(session, followups.dispatch)


@dataclass
class RecordingFollowups:
    """A fake for tests and for callers that drive the work themselves."""

    sent: list[int] = field(default_factory=list)
    checks: list[tuple[int, float]] = field(default_factory=list)
    dispatches: int = 0

    def send_message(self, message_id: int) -> None:
        self.sent.append(message_id)

    def check_status(self, campaign_id: int, countdown: float) -> None:
        self.checks.append((campaign_id, countdown))

    def dispatch(self) -> None:
        self.dispatches += 1
