"""Campaigns over several senders, on SQLite and PostgreSQL: the spread, Message 2 from its
Message 1's number, a paused or stopped sender, the messaging limit, Meta's signals."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import select

from relance.campaigns.answers import record_interaction
from relance.campaigns.dispatch import dispatch
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign
from relance.campaigns.lifecycle import retry_failed
from relance.campaigns.outcomes import DispatchReport
from relance.campaigns.queries import get_campaign
from relance.campaigns.stats_senders import sender_shares, sender_waits
from relance.config import Settings
from relance.db import session_scope
from relance.models import Message, Recipient, Sender, campaign_senders
from relance.pacing.limiter import make_limiter
from relance.providers.base import OutboundMessage, PermanentError, Provider
from relance.providers.events import SenderEvent
from relance.senders import service
from relance.senders.identity import SenderInfo
from relance.senders.schemas import SenderCreate
from relance.senders.signals import apply_sender_event
from tests.support.engine import FakeProvider, make_campaign, phone, seed_contacts

N = 30


class Fleet:
    """One recording fake provider per sender: who sent what."""

    def __init__(self) -> None:
        self.default = FakeProvider()
        self.by_sender: dict[int, FakeProvider] = {}

    def __call__(self, sender: SenderInfo) -> Provider:
        return self.by_sender.setdefault(sender.id, FakeProvider())

    def sent_by(self) -> dict[str, int]:
        """Phone -> the sender id that sent to it (0: the default), over every send."""
        out: dict[str, int] = {}
        for sender_id, fake in [(0, self.default), *self.by_sender.items()]:
            for message in fake.sent:
                out.setdefault(message.to, sender_id)
                assert out[message.to] == sender_id, f"{message.to} got two numbers"
        return out


def _setup(settings: Settings, weights: list[int], **sender: object) -> tuple[int, list[int]]:
    """A campaign of N contacts over the default sender and len(weights)-1 new ones."""
    with session_scope(settings) as session:
        default = service.ensure_default(session, settings)
        ids = [default.id]
        for k in range(len(weights) - 1):
            data = SenderCreate.model_validate({"name": f"s{k}", "provider": "simulator", **sender})
            ids.append(service.create_sender(session, settings, data).id)
        campaign_id = make_campaign(session, [seed_contacts(session, N)])
        session.execute(
            campaign_senders.insert(),
            [
                {"campaign_id": campaign_id, "sender_id": s, "weight": w}
                for s, w in zip(ids, weights, strict=True)
            ],
        )
        launch_campaign(session, settings, RecordingFollowups(), campaign_id)
    return campaign_id, ids


def _dispatch(settings: Settings, fleet: Fleet) -> DispatchReport:
    return dispatch(
        settings,
        fleet.default,
        make_limiter(settings),
        RecordingFollowups(),
        budget_seconds=30,
        providers=fleet,
    )


def test_three_senders_share_a_campaign_and_each_message_2_leaves_from_its_message_1s_number(
    settings: Settings,
) -> None:
    campaign_id, ids = _setup(settings, [1, 1, 1])
    fleet = Fleet()
    _dispatch(settings, fleet)
    first = fleet.sent_by()
    assert len(first) == N
    assert sorted(Counter(first.values()).values()) == [10, 10, 10]
    with session_scope(settings) as session:
        for i in range(N):
            record_interaction(session, settings, RecordingFollowups(), phone(i))
    _dispatch(settings, fleet)
    assert sum(len(f.sent) for f in [fleet.default, *fleet.by_sender.values()]) == 2 * N
    assert fleet.sent_by() == first  # every Message 2 from its contact's Message 1 number
    with session_scope(settings) as session:
        assert get_campaign(session, campaign_id).status == "completed"
        rows = session.execute(select(Message.sender_id, Recipient.sender_id).join(Recipient))
        assert all(m == r for m, r in rows)
        shares = sender_shares(session, settings, campaign_id)
    assert sorted((s["messages_sent"]) for s in shares) == [20, 20, 20]
    assert {s["sender_id"] for s in shares} == set(ids)


def test_weights_spread_the_recipients(settings: Settings) -> None:
    _setup(settings, [2, 1])
    fleet = Fleet()
    _dispatch(settings, fleet)
    assert sorted(Counter(fleet.sent_by().values()).values()) == [10, 20]


def test_a_paused_sender_holds_its_message_1s_a_stopped_one_everything(
    settings: Settings,
) -> None:
    campaign_id, ids = _setup(settings, [1, 1, 1])
    with session_scope(settings) as session:
        session.get_one(Sender, ids[1]).status = "paused"
        session.get_one(Sender, ids[1]).paused_reason = "paused by a person"
        session.get_one(Sender, ids[2]).status = "stopped"
        session.get_one(Sender, ids[2]).paused_reason = "Meta restricted the account"
    fleet = Fleet()
    report = _dispatch(settings, fleet)
    assert Counter(fleet.sent_by().values()) == {0: 10}
    assert report.more
    with session_scope(settings) as session:
        waits = sender_waits(session, settings, campaign_id)
    assert any("paused by a person" in w for w in waits)
    assert any("Meta restricted the account" in w for w in waits)


def test_the_messaging_limit_holds_message_1s_and_says_until_when(settings: Settings) -> None:
    campaign_id, ids = _setup(settings, [1, 1], messaging_limit=4, portfolio="second")
    fleet = Fleet()
    report = _dispatch(settings, fleet)
    assert Counter(fleet.sent_by().values()) == {0: 15, ids[1]: 4}
    assert report.wait_reason == "messaging_limit"
    with session_scope(settings) as session:
        waits = sender_waits(session, settings, campaign_id)
        replied = session.scalars(
            select(Recipient.contact_id).where(Recipient.sender_id == ids[1]).limit(1)
        ).all()
    assert any("messaging limit 4 per 24 h reached, resumes at" in w for w in waits)
    # A Message 2 of the limited number still goes: the reply opened its service window.
    assert replied
    with session_scope(settings) as session:
        contact_phone = session.scalar(
            select(Recipient.contact_id).where(
                Recipient.sender_id == ids[1], Recipient.state == "awaiting_reply"
            )
        )
        from relance.models import Contact

        number = session.get_one(Contact, contact_phone).phone
        record_interaction(session, settings, RecordingFollowups(), number)
    _dispatch(settings, fleet)
    assert len(fleet.by_sender[ids[1]].sent) == 5


def test_a_quality_webhook_slows_a_sender_and_unflagged_restores_it(settings: Settings) -> None:
    with session_scope(settings) as session:
        service.ensure_default(session, settings)
        data = SenderCreate(name="brand", provider="simulator", display_number="+1 555 078 3881")
        sender_id = service.create_sender(session, settings, data).id

    def event(name: str, limit: str = "") -> SenderEvent:
        return SenderEvent(
            dedup_key=name,
            signal="quality",
            event=name,
            timestamp=later_now(),
            display_phone_number="15550783881",
            current_limit=limit,
        )

    with session_scope(settings) as session:
        apply_sender_event(session, settings, event("FLAGGED", "TIER_2K"))
        apply_sender_event(session, settings, event("FLAGGED", "TIER_2K"))  # twice: the same
    with session_scope(settings) as session:
        row = session.get_one(Sender, sender_id)
        assert (row.status, row.quality_rating, row.messaging_limit) == ("slowed", "RED", 2000)
        assert row.paused_reason == "flagged by Meta"
        assert session.get_one(Sender, 1).status == "active"  # only the number named
        # ... but the limit is the business portfolio's: its other number holds it too.
        assert session.get_one(Sender, 1).messaging_limit == 2000
    with session_scope(settings) as session:
        apply_sender_event(session, settings, event("UNFLAGGED", "TIER_10K"))
    with session_scope(settings) as session:
        row = session.get_one(Sender, sender_id)
        assert (row.status, row.messaging_limit, row.paused_reason) == ("active", 10000, None)


def later_now():  # type: ignore[no-untyped-def]
    from relance.models import utcnow

    return utcnow() + timedelta(seconds=1)


def test_a_send_error_that_refuses_a_number_stops_it_and_the_others_go_on(
    settings: Settings,
) -> None:
    campaign_id, ids = _setup(settings, [1, 1])
    fleet = Fleet()
    tried: list[int] = []

    def refuse(message: OutboundMessage) -> PermanentError:
        tried.append(message.message_id)
        return PermanentError("190", "token expired", stops_sender=True)

    fleet.by_sender[ids[1]] = FakeProvider(fail=refuse)
    _dispatch(settings, fleet)
    assert len(fleet.default.sent) == N // 2
    with session_scope(settings) as session:
        sender = session.get_one(Sender, ids[1])
        assert sender.status == "stopped" and "token expired" in (sender.paused_reason or "")
        assert get_campaign(session, campaign_id).status == "sending"  # the others went on
        # Its failed contacts are tried again: never from the stopped number.
        retry_failed(session, settings, RecordingFollowups(), campaign_id)
    before = len(tried)
    report = _dispatch(settings, fleet)
    assert len(tried) == before and report.wait_reason == "sender_stopped"
    with session_scope(settings) as session:
        waits = sender_waits(session, settings, campaign_id)
    assert any("stopped: the provider refused the sender" in w for w in waits)
