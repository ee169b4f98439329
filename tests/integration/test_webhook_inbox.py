"""The webhook inbox (issue 21): the route appends verified bodies and answers; workers apply
them in batches, in arrival order, exactly once; sweeps wait for what the inbox accepted.

The route tests run on SQLite and PostgreSQL; the crash, order and hold tests on PostgreSQL
(the production path: on SQLite relance applies webhooks inline by default).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from relance.campaigns import inbox, sweeps
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign
from relance.config import Settings, get_settings
from relance.db import get_engine, session_scope
from relance.deps import get_followups
from relance.models import Campaign, Contact, InboundEvent, Message, Recipient, WebhookInbox, utcnow
from relance.processes import wait_until
from relance.providers.meta_webhooks import message_payload, sign, status_payload
from tests.support.api import api_client
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    make_campaign,
    run_dispatch,
    seed_contacts,
)

SECRET = "test-app-secret"  # conftest's META_APP_SECRET; the simulator signs like Meta


def _inbox_settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("WEBHOOK_INGEST", "inbox")
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def inbox_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return _inbox_settings(monkeypatch)


@pytest.fixture
def pg_inbox(pg_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return _inbox_settings(monkeypatch)


@pytest.fixture
def inbox_client(inbox_settings: Settings, followups: RecordingFollowups) -> Iterator[TestClient]:
    with api_client(inbox_settings) as c:
        c.app.dependency_overrides[get_followups] = lambda: followups  # type: ignore[attr-defined]
        yield c


def _sent_campaign(settings: Settings, n: int, window: int = 3600) -> tuple[int, list[Any]]:
    """A campaign of n contacts whose Message 1s went out: (campaign id, [(id, wamid, phone)])."""
    with session_scope(settings) as session:
        category = seed_contacts(session, n)
        campaign_id = make_campaign(session, [category], window=window)
    with session_scope(settings) as session:
        launch_campaign(session, settings, RecordingFollowups(), campaign_id)
    run_dispatch(settings, FakeProvider())
    with session_scope(settings) as session:
        rows = session.execute(
            select(Message.id, Message.provider_message_id, Recipient.id)
            .join(Recipient, Recipient.id == Message.recipient_id)
            .where(Message.campaign_id == campaign_id)
            .order_by(Message.id)
        ).all()
    return campaign_id, [tuple(r) for r in rows]


def _status_body(wamid: str, status: str, message_id: int | None = None) -> bytes:
    status_obj: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "timestamp": "1700000000",
        "recipient_id": "33600000000",
    }
    if message_id is not None:
        status_obj["biz_opaque_callback_data"] = str(message_id)
    return json.dumps(status_payload([status_obj])).encode()


def _reply_body(phone: str, context: str) -> bytes:
    message = {
        "from": phone.lstrip("+"),
        "id": f"wamid.reply.{uuid.uuid4().hex}",
        "timestamp": "1700000000",
        "type": "text",
        "text": {"body": "Oui"},
        "context": {"from": "15550000000", "id": context},
    }
    return json.dumps(message_payload([message])).encode()


def _append(settings: Settings, *bodies: bytes, at: datetime | None = None) -> None:
    """What the route does once a body is verified (``at``: when it was accepted)."""
    with get_engine(settings).begin() as conn:
        inbox.append(
            conn, [inbox.Entry("simulator", body, None, at or utcnow()) for body in bodies]
        )


def _unapplied(settings: Settings) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).where(WebhookInbox.applied_at.is_(None))) or 0


def _post(client: TestClient, body: bytes, secret: str = SECRET) -> Any:
    return client.post(
        "/webhooks/simulator",
        content=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)},
    )


# The route -------------------------------------------------------------------------------------


def test_route_appends_and_a_worker_applies_exactly_once(
    inbox_settings: Settings, inbox_client: TestClient, followups: RecordingFollowups
) -> None:
    campaign_id, sent = _sent_campaign(inbox_settings, 1)
    message_id, wamid, _ = sent[0]
    body = _status_body(wamid, "delivered")
    r = _post(inbox_client, body)
    assert r.status_code == 200 and r.json() == {"accepted": True}
    with session_scope(inbox_settings) as session:
        assert session.get_one(Message, message_id).status == "sent"  # not applied yet
    assert _unapplied(inbox_settings) == 1
    assert inbox.drain(inbox_settings, followups)["applied"] == 1
    assert _post(inbox_client, body).status_code == 200  # Meta retries: a duplicate
    assert inbox.drain(inbox_settings, followups)["applied"] == 1
    assert inbox.drain(inbox_settings, followups)["applied"] == 0
    with session_scope(inbox_settings) as session:
        assert session.get_one(Message, message_id).status == "delivered"
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == 1
        assert session.get_one(Campaign, campaign_id).delivered == 1
    assert _unapplied(inbox_settings) == 0
    assert_counters_match_rows(inbox_settings, campaign_id)


def test_wrongly_signed_webhook_is_refused_and_not_appended(
    inbox_settings: Settings, inbox_client: TestClient, followups: RecordingFollowups
) -> None:
    body = _status_body("wamid.x", "delivered")
    assert _post(inbox_client, body, secret="forged").status_code == 403
    r = inbox_client.post("/webhooks/simulator", content=body)
    assert r.status_code == 401
    with session_scope(inbox_settings) as session:
        assert session.scalar(select(func.count()).select_from(WebhookInbox)) == 0


def test_a_malformed_signed_body_is_marked_applied_with_its_error(
    inbox_settings: Settings, inbox_client: TestClient, followups: RecordingFollowups
) -> None:
    assert _post(inbox_client, b"{not json").status_code == 200
    assert inbox.drain(inbox_settings, followups)["applied"] == 1
    with session_scope(inbox_settings) as session:
        row = session.scalars(select(WebhookInbox)).one()
        assert row.applied_at is not None and row.error


# Crash, order, holds (PostgreSQL) --------------------------------------------------------------

_KILLED_APPLIER = """
import sys
from relance.campaigns import inbox
from relance.campaigns.followups import RecordingFollowups
from relance.config import get_settings

real = inbox._mark_applied

def mark_then_hang(session, ids, errors):
    real(session, ids, errors)
    session.flush()
    print("applied, not committed", flush=True)
    sys.stdin.read()  # until killed

inbox._mark_applied = mark_then_hang
inbox.apply_batch(get_settings(), RecordingFollowups())
"""


def test_worker_killed_between_append_and_apply_loses_nothing(pg_inbox: Settings) -> None:
    campaign_id, sent = _sent_campaign(pg_inbox, 5)
    for status in ("delivered", "read"):
        _append(pg_inbox, *(_status_body(wamid, status) for _, wamid, _ in sent))
    worker = subprocess.Popen(
        [sys.executable, "-c", _KILLED_APPLIER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=dict(os.environ),
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "applied, not committed"
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(30)
    assert _unapplied(pg_inbox) == 10
    followups = RecordingFollowups()
    # Once PostgreSQL has seen the connection go (it releases the applier's lock), it all applies.
    wait_until(lambda: inbox.drain(pg_inbox, followups)["applied"] == 10, 30, "the inbox applied")
    assert inbox.drain(pg_inbox, followups)["applied"] == 0
    with session_scope(pg_inbox) as session:
        statuses = session.scalars(
            select(Message.status).where(Message.campaign_id == campaign_id)
        ).all()
        assert statuses == ["read"] * 5
        assert session.scalar(select(func.count()).select_from(InboundEvent)) == 10
        campaign = session.get_one(Campaign, campaign_id)
        assert (campaign.delivered, campaign.read) == (5, 5)
    assert_counters_match_rows(pg_inbox, campaign_id)


def test_events_of_one_message_apply_in_arrival_order_across_batches(
    pg_inbox: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, sent = _sent_campaign(pg_inbox, 2)
    (m1, w1, _), (m2, w2, _) = sent
    # Message 1: delivered then read. Message 2: read arrives first, its delivered is late.
    _append(
        pg_inbox,
        _status_body(w1, "delivered"),
        _status_body(w2, "read"),
        _status_body(w1, "read"),
        _status_body(w2, "delivered"),
    )
    monkeypatch.setenv("WEBHOOK_APPLY_BATCH", "1")
    get_settings.cache_clear()
    one_by_one = get_settings()
    assert inbox.drain(one_by_one, RecordingFollowups())["batches"] == 4
    with session_scope(pg_inbox) as session:
        outcomes = session.execute(
            select(InboundEvent.message_id, InboundEvent.outcome).order_by(InboundEvent.id)
        ).all()
    assert [(m, o.split(" ")[0] if o else o) for m, o in outcomes] == [
        (m1, "delivered"),
        (m2, "read"),
        (m1, "read"),
        (m2, "ignored"),  # a status never moves backwards: the late delivered changes nothing
    ]


def test_a_reply_in_the_inbox_holds_its_campaign_open(pg_inbox: Settings) -> None:
    campaign_id, sent = _sent_campaign(pg_inbox, 1, window=60)
    _, wamid, recipient_id = sent[0]
    with session_scope(pg_inbox) as session:
        recipient = session.get_one(Recipient, recipient_id)
        closes = recipient.window_closes_at
        phone = session.get_one(Contact, recipient.contact_id).phone
    assert closes is not None
    _append(pg_inbox, _reply_body(phone, wamid), at=closes - timedelta(seconds=1))
    # The window has closed by the sweep's clock, but a reply accepted before it is waiting.
    after = closes + timedelta(seconds=30)
    with session_scope(pg_inbox) as session:
        assert sweeps.expire_windows(session, now=after) == 0
    with session_scope(pg_inbox) as session:
        assert session.get_one(Recipient, recipient_id).state == "awaiting_reply"
        assert session.get_one(Campaign, campaign_id).status == "sending"
    followups = RecordingFollowups()
    assert inbox.drain(pg_inbox, followups)["applied"] == 1
    with session_scope(pg_inbox) as session:
        # Judged by when it was accepted, not when it was applied: in its window.
        assert session.get_one(Recipient, recipient_id).state == "replied"
        assert session.get_one(Campaign, campaign_id).status == "sending"
    assert len(followups.sent) == 1  # Message 2 queued


def test_without_a_waiting_reply_the_window_closes(pg_inbox: Settings) -> None:
    """The control of the test above: the sweep does close the window when nothing waits."""
    campaign_id, sent = _sent_campaign(pg_inbox, 1, window=60)
    recipient_id = sent[0][2]
    with session_scope(pg_inbox) as session:
        closes = session.get_one(Recipient, recipient_id).window_closes_at
    assert closes is not None
    with session_scope(pg_inbox) as session:
        assert sweeps.expire_windows(session, now=closes + timedelta(seconds=30)) == 1
    with session_scope(pg_inbox) as session:
        assert session.get_one(Campaign, campaign_id).status == "completed"


@pytest.mark.parametrize("sent_waits", [True, False])
def test_recovery_waits_for_a_sent_status_in_the_inbox(
    pg_inbox: Settings, monkeypatch: pytest.MonkeyPatch, sent_waits: bool
) -> None:
    """A message left ``sending`` is resent after its grace only once every webhook accepted
    before the grace ended is applied; its ``sent`` status then proves it went."""
    monkeypatch.setenv("UNKNOWN_OUTCOME_POLICY", "resend")
    monkeypatch.setenv("SENDING_GRACE_SECONDS", "10")
    get_settings.cache_clear()
    settings = get_settings()
    _, sent = _sent_campaign(settings, 1)
    message_id, wamid, _ = sent[0]
    now = utcnow()
    claimed = now - timedelta(seconds=60)
    with session_scope(settings) as session:
        # The worker died after the provider took it, before recording the answer.
        session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status="sending", provider_message_id=None, claimed_at=claimed)
        )
    if sent_waits:
        _append(
            settings,
            _status_body(wamid, "sent", message_id),
            at=claimed + timedelta(seconds=5),  # accepted inside the grace, applied late
        )
    with session_scope(settings) as session:
        result = sweeps.recover_interrupted(session, settings, now=now)
    assert result["requeued"] == (0 if sent_waits else 1)
    inbox.drain(settings, RecordingFollowups())
    with session_scope(settings) as session:
        message = session.get_one(Message, message_id)
        assert message.status == ("sent" if sent_waits else "pending")
        assert message.provider_message_id == (wamid if sent_waits else None)
    with session_scope(settings) as session:
        assert sweeps.recover_interrupted(session, settings, now=now)["requeued"] == 0


def test_lag_is_the_age_of_the_oldest_unapplied_entry(pg_inbox: Settings) -> None:
    now = utcnow()
    with session_scope(pg_inbox) as session:
        assert inbox.lag_seconds(session, now) == 0.0
    _append(pg_inbox, b"{}", at=now - timedelta(seconds=7))
    _append(pg_inbox, b"{}", at=now - timedelta(seconds=2))
    with session_scope(pg_inbox) as session:
        assert inbox.lag_seconds(session, now) == pytest.approx(7.0)
    inbox.drain(pg_inbox, RecordingFollowups())
    with session_scope(pg_inbox) as session:
        assert inbox.lag_seconds(session, now) == 0.0


def test_health_shows_the_inbox_lag(inbox_settings: Settings) -> None:
    from relance.health import database_ok

    assert database_ok(inbox_settings)["webhook_inbox_lag_seconds"] == 0.0
    _append(inbox_settings, b"{}", at=utcnow() - timedelta(seconds=30))
    assert database_ok(inbox_settings)["webhook_inbox_lag_seconds"] >= 30


def test_applied_entries_are_purged_after_their_keep_time_waiting_ones_never(
    inbox_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relance.tasks import purge_webhook_inbox

    now = utcnow()
    old = now - timedelta(hours=inbox_settings.webhook_inbox_keep_hours + 1)
    _append(inbox_settings, b"{}", b"{}", b"{}", at=old)  # applied below: purged
    inbox.drain(inbox_settings, RecordingFollowups())
    _append(inbox_settings, b"{}", at=old)  # old but still waiting: kept
    _append(inbox_settings, b"{}", at=now - timedelta(hours=1))  # waiting, recent: kept
    monkeypatch.setattr(inbox, "PURGE_BATCH", 2)  # several short transactions
    assert purge_webhook_inbox.run() == {"purged": 3}
    with session_scope(inbox_settings) as session:
        left = session.execute(select(WebhookInbox.applied_at)).scalars().all()
    assert left == [None, None]
    assert purge_webhook_inbox.run() == {"purged": 0}
