"""Test helpers for the engine: seed data, a recording fake provider, a full in-process run."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relance.campaigns import counters
from relance.campaigns.dispatch import dispatch
from relance.campaigns.domain import FINAL_RECIPIENT_STATES
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.db import session_scope
from relance.models import Campaign, Category, Contact, Message, Recipient, contact_categories
from relance.pacing.limiter import make_limiter
from relance.providers.base import OutboundMessage, ProviderError, SendResult


def phone(i: int) -> str:
    """A valid French mobile number, distinct for each i < 10**8."""
    return f"+336{i:08d}"


def seed_contacts(session: Session, n: int, category: str = "clients", start: int = 0) -> int:
    """n contacts in one category; returns the category id."""
    cat = Category(name=category)
    session.add(cat)
    session.flush()
    contacts = [
        Contact(phone=phone(start + i), first_name=f"Ada{i}", last_name="L", attributes={})
        for i in range(n)
    ]
    session.add_all(contacts)
    session.flush()
    session.execute(
        contact_categories.insert(), [{"contact_id": c.id, "category_id": cat.id} for c in contacts]
    )
    return cat.id


# What the meta provider requires of Message 1 (the other providers send the text).
TEMPLATE = {"name": "relance_test", "language": "fr", "parameters": ["{first_name}"]}


def make_campaign(
    session: Session,
    category_ids: list[int],
    message_2: str | None = "Merci {first_name} !",
    window: int = 3600,
) -> int:
    from relance.models import campaign_categories

    campaign = Campaign(
        name="test",
        message_1="Bonjour {first_name}",
        message_1_template=TEMPLATE,
        message_2=message_2,
        reply_window_seconds=window,
        placeholder_defaults={},
    )
    session.add(campaign)
    session.flush()
    if category_ids:
        session.execute(
            campaign_categories.insert(),
            [{"campaign_id": campaign.id, "category_id": c} for c in category_ids],
        )
    return campaign.id


@dataclass
class FakeProvider:
    """Accepts every send (or raises what ``fail`` says for a number) and records it."""

    name: str = "simulator"
    fail: Callable[[OutboundMessage], ProviderError | None] = lambda m: None
    sent: list[OutboundMessage] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=itertools.count)  # type: ignore[type-arg]
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, message: OutboundMessage) -> SendResult:
        error = self.fail(message)
        if error is not None:
            raise error
        with self._lock:
            self.sent.append(message)
            return SendResult(f"wamid.T{next(self._ids)}.{uuid.uuid4().hex[:12]}")

    def close(self) -> None:
        pass


def run_dispatch(
    settings: Settings,
    provider: FakeProvider,
    followups: RecordingFollowups | None = None,
    message_ids: list[int] | None = None,
    recipient_ids: list[int] | None = None,
) -> RecordingFollowups:
    followups = followups or RecordingFollowups()
    dispatch(
        settings,
        provider,
        make_limiter(settings),
        followups,
        budget_seconds=30,
        message_ids=message_ids,
        recipient_ids=recipient_ids,
    )
    return followups


def recipient_ids_of(settings: Settings, campaign_id: int) -> list[int]:
    """The campaign's recipients: what ``recipient_ids`` restricts a dispatch to."""
    with session_scope(settings) as session:
        return list(
            session.scalars(
                select(Recipient.id)
                .where(Recipient.campaign_id == campaign_id)
                .order_by(Recipient.id)
            )
        )


def assert_message_1_rows(
    settings: Settings, campaign_id: int, retried: Mapping[int, int] | None = None
) -> None:
    """No duplicate Message 1: each recipient has one row once the claim created it (its
    ``message_1_created_at`` set, none before), plus one per ``retry_failed`` that retried it
    (``retried``: recipient id -> times); never two of them pending or sending at once."""
    retried = retried or {}
    with session_scope(settings) as session:
        recipients = dict(
            session.execute(
                select(Recipient.id, Recipient.message_1_created_at).where(
                    Recipient.campaign_id == campaign_id
                )
            ).all()
        )
        rows = session.execute(
            select(Message.recipient_id, Message.status).where(
                Message.campaign_id == campaign_id, Message.kind == "message_1"
            )
        ).all()
    per_recipient = Counter(rid for rid, _ in rows)
    in_flight = Counter(rid for rid, status in rows if status in ("pending", "sending"))
    for rid, created_at in recipients.items():
        expected = (0 if created_at is None else 1) + retried.get(rid, 0)
        assert per_recipient[rid] == expected, (rid, created_at, per_recipient[rid], expected)
        assert in_flight[rid] <= 1, (rid, in_flight[rid])


def campaign_row(settings: Settings, campaign_id: int) -> Campaign:
    with session_scope(settings) as session:
        return session.get_one(Campaign, campaign_id)


def assert_counters_match_rows(settings: Settings, campaign_id: int) -> None:
    with session_scope(settings) as session:
        campaign = session.get_one(Campaign, campaign_id)
        stored = dict(counters.counter_values(campaign))
        truth = counters.recount(session, campaign_id)
        assert {k: stored[k] for k in truth} == truth


def open_recipients(settings: Settings, campaign_id: int) -> int:
    with session_scope(settings) as session:
        return (
            session.scalar(
                select(func.count()).where(
                    Recipient.campaign_id == campaign_id,
                    Recipient.state.not_in([s.value for s in FINAL_RECIPIENT_STATES]),
                )
            )
            or 0
        )


def later(seconds: float) -> datetime:
    from relance.models import utcnow

    return utcnow() + timedelta(seconds=seconds)
