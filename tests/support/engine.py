"""Test helpers for the engine: seed data, a recording fake provider, a full in-process run."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relance.campaigns import repository as repo
from relance.campaigns.domain import FINAL_RECIPIENT_STATES
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.sending import dispatch
from relance.config import Settings
from relance.db import session_scope
from relance.models import Campaign, Category, Contact, Recipient, contact_categories
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
) -> RecordingFollowups:
    followups = followups or RecordingFollowups()
    dispatch(
        settings,
        provider,
        make_limiter(settings),
        followups,
        budget_seconds=30,
        message_ids=message_ids,
    )
    return followups


def campaign_row(settings: Settings, campaign_id: int) -> Campaign:
    with session_scope(settings) as session:
        return session.get_one(Campaign, campaign_id)


def assert_counters_match_rows(settings: Settings, campaign_id: int) -> None:
    with session_scope(settings) as session:
        campaign = session.get_one(Campaign, campaign_id)
        stored = dict(repo.counter_values(campaign))
        truth = repo.recount(session, campaign_id)
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
