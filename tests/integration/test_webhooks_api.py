"""Provider webhooks through the real app, on SQLite and PostgreSQL (SPEC 2, 3, 6).

Each test launches a campaign whose Message 1s went out through FakeProvider (so they carry
provider ids), then posts what the provider would post: Cloud API bodies built from the recorded
fixtures in tests/fixtures/meta, signed like Meta signs them; Wassenger and Twilio bodies from
their own fixtures, with their own authentication.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from relance.campaigns import answers, bulk_status, inbound, sweeps
from relance.campaigns.dispatch import claim
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign
from relance.config import SIMULATOR_APP_SECRET, Settings, get_settings
from relance.db import session_scope
from relance.models import Contact, InboundEvent, Message, Recipient, utcnow
from relance.providers.meta_webhooks import sign
from relance.providers.twilio_webhooks import twilio_signature
from tests.support.api import row_counts
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    make_campaign,
    phone,
    run_dispatch,
    seed_contacts,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
TABLES = ("inbound_events", "messages", "recipients")
# What each provider needs to start (conftest sets META_APP_SECRET, which the simulator uses too).
PROVIDER_ENV = {
    "meta": {
        "META_ACCESS_TOKEN": "test-token",
        "META_PHONE_NUMBER_ID": "106540352242922",
        "META_VERIFY_TOKEN": "relance-verify-token",
    },
    "twilio": {
        "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
        "TWILIO_AUTH_TOKEN": "twilio-auth-token",
        "TWILIO_FROM": "whatsapp:+14155238886",
        "PUBLIC_URL": "http://testserver",  # what Twilio signs: the TestClient's URL
    },
    "wassenger": {
        "WASSENGER_API_KEY": "wassenger-api-key",
        "WASSENGER_WEBHOOK_SECRET": "wassenger-shared-secret",
    },
    "simulator": {},
}


def use_provider(monkeypatch: pytest.MonkeyPatch, provider: str) -> Settings:
    """From now on the app runs this provider (the endpoints read get_settings() per request)."""
    monkeypatch.setenv("RELANCE_PROVIDER", provider)
    for name, value in PROVIDER_ENV[provider].items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return get_settings()


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """conftest's settings (SQLite, then PostgreSQL) with the provider most tests post for."""
    return use_provider(monkeypatch, "meta")


@dataclass(frozen=True)
class Sent:
    """One Message 1 as the provider knows it."""

    message_id: int
    provider_message_id: str
    phone: str
    recipient_id: int


def launch(
    settings: Settings,
    n: int,
    window: int = 3600,
    category_id: int | None = None,
    message_2: str | None = "Merci {first_name} !",
) -> tuple[int, int]:
    """A launched campaign over n new contacts (or an existing category): (campaign, category)."""
    with session_scope(settings) as session:
        if category_id is None:
            category_id = seed_contacts(session, n)
        campaign_id = make_campaign(session, [category_id], message_2=message_2, window=window)
    with session_scope(settings) as session:
        launch_campaign(session, settings, RecordingFollowups(), campaign_id)
    return campaign_id, category_id


def sent_messages(settings: Settings, campaign_id: int) -> list[Sent]:
    with session_scope(settings) as session:
        rows = session.execute(
            select(Message.id, Message.provider_message_id, Contact.phone, Recipient.id)
            .join(Recipient, Recipient.id == Message.recipient_id)
            .join(Contact, Contact.id == Recipient.contact_id)
            .where(Message.campaign_id == campaign_id, Message.kind == "message_1")
            .order_by(Contact.phone)
        )
        return [Sent(m, p or "", ph, r) for m, p, ph, r in rows]


def launch_and_send(settings: Settings, n: int, window: int = 3600) -> tuple[int, list[Sent]]:
    campaign_id, _ = launch(settings, n, window)
    run_dispatch(settings, FakeProvider())
    sent = sent_messages(settings, campaign_id)
    assert len(sent) == n and all(s.provider_message_id for s in sent)
    return campaign_id, sent


# Building and posting Cloud API webhooks ---------------------------------------------------------


def _fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / "meta" / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _value(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["entry"][0]["changes"][0]["value"]  # type: ignore[no-any-return]


def status_entry(
    wamid: str, status: str, to: str, our_id: int | str | None = None
) -> dict[str, Any]:
    """One ``statuses[]`` element from the recorded fixture, about our message."""
    name = (
        "webhook_status_failed_131026.json"
        if status == "failed"
        else f"webhook_status_{status}.json"
    )
    entry = dict(_value(_fixture(name))["statuses"][0])
    entry.update(id=wamid, recipient_id=to.lstrip("+"))
    if our_id is None:
        entry.pop("biz_opaque_callback_data")
    else:
        entry["biz_opaque_callback_data"] = str(our_id)
    return entry


def statuses_body(*entries: dict[str, Any]) -> dict[str, Any]:
    payload = _fixture("webhook_status_sent.json")
    _value(payload)["statuses"] = list(entries)
    return payload


def status_body(sent: Sent, status: str) -> dict[str, Any]:
    return statuses_body(
        status_entry(sent.provider_message_id, status, sent.phone, sent.message_id)
    )


def message_body(
    fixture: str, from_phone: str, context_id: str | None = None, text: str | None = None
) -> dict[str, Any]:
    """An inbound message built from the recorded fixture, answering ``context_id``."""
    payload = _fixture(fixture)
    value = _value(payload)
    digits = from_phone.lstrip("+")
    value["contacts"][0]["wa_id"] = digits
    message = value["messages"][0]
    message.update({"from": digits, "id": f"wamid.IN{uuid.uuid4().hex}"})
    if message["type"] == "reaction":
        message["reaction"]["message_id"] = context_id
    elif context_id is None:
        message.pop("context", None)
    else:
        message["context"]["id"] = context_id
    if text is not None:
        message["text"] = {"body": text}
    return payload


def post_meta(
    client: TestClient,
    payload: dict[str, Any] | bytes,
    provider: str = "meta",
    signature: str | None = "sign",
) -> httpx.Response:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Content-Type": "application/json"}
    if signature == "sign":
        signature = sign(body, get_settings().meta_app_secret)
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    response: httpx.Response = client.post(f"/webhooks/{provider}", content=body, headers=headers)
    return response


def ok(response: httpx.Response) -> dict[str, int]:
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# Reading state -----------------------------------------------------------------------------------


def message_row(settings: Settings, message_id: int) -> Message:
    with session_scope(settings) as session:
        return session.get_one(Message, message_id)


def recipient_state(settings: Settings, recipient_id: int) -> str:
    with session_scope(settings) as session:
        return session.get_one(Recipient, recipient_id).state


def message_2_ids(settings: Settings, recipient_id: int) -> list[int]:
    with session_scope(settings) as session:
        return list(
            session.scalars(
                select(Message.id).where(
                    Message.recipient_id == recipient_id, Message.kind == "message_2"
                )
            )
        )


def events(settings: Settings) -> list[InboundEvent]:
    with session_scope(settings) as session:
        return list(session.scalars(select(InboundEvent).order_by(InboundEvent.id)))


def stats(client: TestClient, campaign_id: int) -> dict[str, Any]:
    r = client.get(f"/api/campaigns/{campaign_id}/stats")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


# Signatures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["meta", "simulator"])
def test_a_signed_status_is_accepted_and_applied(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    use_provider(monkeypatch, provider)
    cid, sent = launch_and_send(settings, 3)
    target = sent[1]

    tally = ok(post_meta(client, status_body(target, "delivered"), provider=provider))

    assert tally == {"received": 1, "applied": 1, "matched": 1}
    row = message_row(settings, target.message_id)
    assert (row.status, row.delivered_at is not None) == ("delivered", True)
    assert message_row(settings, sent[0].message_id).status == "sent"
    s = stats(client, cid)
    assert (s["delivered"], s["read"], s["awaiting_reply"]) == (1, 0, 3)
    ok(post_meta(client, status_body(target, "read"), provider=provider))
    s = stats(client, cid)
    assert (s["delivered"], s["read"]) == (1, 1)
    (first, second) = events(settings)
    assert (first.provider, first.matched, first.message_id) == (provider, True, target.message_id)
    assert (second.outcome, second.recipient_id) == ("read", target.recipient_id)
    assert_counters_match_rows(settings, cid)


@pytest.mark.parametrize(
    ("signature", "code"),
    [
        (None, 401),
        ("sha256=" + "0" * 64, 403),
        ("sha256=deadbeef", 403),
        ("wrong-secret", 403),
        ("one-byte-changed", 403),
    ],
)
def test_an_unsigned_or_wrongly_signed_webhook_is_refused_and_writes_nothing(
    client: TestClient,
    settings: Settings,
    followups: RecordingFollowups,
    signature: str | None,
    code: int,
) -> None:
    cid, sent = launch_and_send(settings, 2)
    payload = statuses_body(
        status_entry(sent[0].provider_message_id, "read", sent[0].phone, sent[0].message_id)
    )
    reply = message_body("webhook_text_reply.json", sent[1].phone, sent[1].provider_message_id)
    _value(payload)["messages"] = _value(reply)["messages"]  # a status and a reply in one body
    body = json.dumps(payload).encode()
    if signature == "wrong-secret":
        signature = sign(body, "not-the-app-secret")
    elif signature == "one-byte-changed":
        signature = sign(body, get_settings().meta_app_secret)
        body = body.replace(b'"read"', b'"reaD"')
    before = row_counts(settings, *TABLES)
    stats_before = stats(client, cid)

    r = post_meta(client, body, signature=signature)

    assert r.status_code == code, r.text
    assert "X-Hub-Signature-256" in r.json()["detail"]
    assert row_counts(settings, *TABLES) == before
    assert message_row(settings, sent[0].message_id).status == "sent"
    assert recipient_state(settings, sent[1].recipient_id) == "awaiting_reply"
    assert stats(client, cid) == stats_before
    assert followups.sent == []


def test_a_malformed_signed_body_is_400_and_writes_nothing(
    client: TestClient, settings: Settings
) -> None:
    _, sent = launch_and_send(settings, 1)
    payload = status_body(sent[0], "delivered")
    del _value(payload)["statuses"][0]["status"]
    before = row_counts(settings, *TABLES)

    r = post_meta(client, payload)

    assert r.status_code == 400
    assert "statuses[0].status" in r.json()["detail"]
    assert post_meta(client, b"{not json").status_code == 400
    assert row_counts(settings, *TABLES) == before


# Duplicates, order, unknown messages, batches ----------------------------------------------------


def test_a_duplicate_post_answers_200_and_changes_nothing(
    client: TestClient, settings: Settings
) -> None:
    cid, sent = launch_and_send(settings, 2)
    body = status_body(sent[0], "read")
    ok(post_meta(client, body))
    before, stats_before = row_counts(settings, *TABLES), stats(client, cid)
    row_before = message_row(settings, sent[0].message_id)

    tally = ok(post_meta(client, body))

    assert tally == {"received": 1, "duplicates": 1}
    assert row_counts(settings, *TABLES) == before
    assert stats(client, cid) == stats_before
    row = message_row(settings, sent[0].message_id)
    assert (row.status, row.read_at, row.delivered_at) == (
        "read",
        row_before.read_at,
        row_before.delivered_at,
    )


def test_statuses_out_of_order_never_move_backwards(client: TestClient, settings: Settings) -> None:
    cid, sent = launch_and_send(settings, 2)
    first, second = sent

    # read before delivered: read implies delivered.
    ok(post_meta(client, status_body(first, "read")))
    row = message_row(settings, first.message_id)
    assert row.status == "read"
    assert row.delivered_at is not None and row.read_at is not None
    assert (stats(client, cid)["delivered"], stats(client, cid)["read"]) == (1, 1)

    # The late delivered (and a late sent) change nothing, not even the counters.
    ok(post_meta(client, status_body(first, "delivered")))
    ok(post_meta(client, status_body(first, "sent")))
    assert message_row(settings, first.message_id).status == "read"
    assert message_row(settings, first.message_id).delivered_at == row.delivered_at
    assert (stats(client, cid)["delivered"], stats(client, cid)["read"]) == (1, 1)
    assert [e.outcome for e in events(settings)][1:] == [
        "ignored (delivered after read)",
        "ignored (sent after read)",
    ]

    # failed is final: the recipient fails with the provider's code; later statuses do nothing.
    ok(post_meta(client, status_body(second, "failed")))
    for late in ("delivered", "read"):
        ok(post_meta(client, status_body(second, late)))
    row = message_row(settings, second.message_id)
    assert (row.status, row.error_code, row.delivered_at) == ("failed", "131026", None)
    assert recipient_state(settings, second.recipient_id) == "failed"
    s = stats(client, cid)
    assert (s["failed"], s["delivered"], s["read"], s["awaiting_reply"]) == (1, 1, 1, 1)
    assert_counters_match_rows(settings, cid)


def test_a_status_for_a_message_we_never_sent_is_stored_unmatched(
    client: TestClient, settings: Settings
) -> None:
    cid, sent = launch_and_send(settings, 1)
    stats_before = stats(client, cid)
    unknown = [
        status_entry("wamid.NEVER-SENT-BY-US", "delivered", phone(99)),
        # Someone else's opaque data, and one of our ids already matched to another wamid.
        status_entry("wamid.OTHER-1", "read", phone(99), "campaign-7"),
        status_entry("wamid.OTHER-2", "read", phone(99), sent[0].message_id),
        status_entry("wamid.OTHER-3", "read", phone(99), "9" * 40),
    ]

    tally = ok(post_meta(client, statuses_body(*unknown)))

    assert tally == {"received": 4, "applied": 4, "unmatched": 4}
    stored = events(settings)
    assert [(e.matched, e.outcome, e.message_id) for e in stored] == [
        (False, "unmatched", None)
    ] * 4
    assert stored[0].payload["id"] == "wamid.NEVER-SENT-BY-US"
    assert message_row(settings, sent[0].message_id).status == "sent"
    assert stats(client, cid) == stats_before


def test_a_batch_of_100_statuses_is_applied_in_one_post(
    client: TestClient, settings: Settings
) -> None:
    cid, sent = launch_and_send(settings, 100)
    body = statuses_body(
        *(status_entry(s.provider_message_id, "delivered", s.phone, s.message_id) for s in sent)
    )

    tally = ok(post_meta(client, body))

    assert tally == {"received": 100, "applied": 100, "matched": 100}
    with session_scope(settings) as session:
        delivered = session.scalar(
            select(func.count()).where(Message.campaign_id == cid, Message.status == "delivered")
        )
    assert delivered == 100
    assert stats(client, cid)["delivered"] == 100
    assert_counters_match_rows(settings, cid)


def test_a_batch_is_one_transaction_a_failure_inside_it_writes_nothing(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid, sent = launch_and_send(settings, 100)
    real = bulk_status.apply_forward
    calls: list[int] = []

    def crash_once_applied(*args: Any, **kwargs: Any) -> Any:
        # The batch's one UPDATE has moved all 100 messages when the failure comes.
        calls.append(len(real(*args, **kwargs)))
        raise RuntimeError("the database went away on event 100")

    monkeypatch.setattr(inbound, "apply_forward", crash_once_applied)
    body = statuses_body(
        *(status_entry(s.provider_message_id, "delivered", s.phone, s.message_id) for s in sent)
    )
    before = row_counts(settings, *TABLES)

    with pytest.raises(RuntimeError, match="event 100"):
        post_meta(client, body)

    assert calls == [100]
    assert row_counts(settings, *TABLES) == before
    assert stats(client, cid)["delivered"] == 0
    # Meta retries the same body: this time all of it goes in.
    monkeypatch.setattr(inbound, "apply_forward", real)
    assert ok(post_meta(client, body))["applied"] == 100
    assert stats(client, cid)["delivered"] == 100


def test_a_status_for_a_message_left_sending_is_matched_by_our_id(
    client: TestClient, settings: Settings
) -> None:
    """The worker claimed the message and died before storing the provider's id (crash)."""
    cid, _ = launch(settings, 2)
    claimed = claim(settings, limit=1)  # pending -> sending, committed; the send never recorded
    assert len(claimed) == 1
    message_id = claimed[0].message_id
    row = message_row(settings, message_id)
    assert (row.status, row.provider_message_id) == ("sending", None)
    wamid = f"wamid.CRASH{uuid.uuid4().hex}"

    tally = ok(
        post_meta(
            client, statuses_body(status_entry(wamid, "delivered", claimed[0].to, message_id))
        )
    )

    assert tally["matched"] == 1
    row = message_row(settings, message_id)
    assert (row.status, row.provider_message_id) == ("delivered", wamid)
    assert row.sent_at is not None and row.delivered_at is not None
    assert recipient_state(settings, row.recipient_id) == "awaiting_reply"
    s = stats(client, cid)
    assert (s["message_1_sent"], s["delivered"], s["awaiting_reply"], s["pending"]) == (1, 1, 1, 1)
    # From now on the provider id matches directly.
    ok(post_meta(client, statuses_body(status_entry(wamid, "read", claimed[0].to))))
    assert message_row(settings, message_id).status == "read"
    assert_counters_match_rows(settings, cid)


# Replies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    [
        "webhook_text_reply.json",
        "webhook_button_reply.json",
        "webhook_interactive_reply.json",
        "webhook_reaction.json",
    ],
)
def test_an_answer_in_the_window_queues_message_2(
    client: TestClient, settings: Settings, followups: RecordingFollowups, fixture: str
) -> None:
    cid, sent = launch_and_send(settings, 3)
    who = sent[1]

    tally = ok(post_meta(client, message_body(fixture, who.phone, who.provider_message_id)))

    assert tally == {"received": 1, "applied": 1, "matched": 1}
    assert recipient_state(settings, who.recipient_id) == "replied"
    m2 = message_2_ids(settings, who.recipient_id)
    assert len(m2) == 1
    assert message_row(settings, m2[0]).status == "pending"
    assert followups.sent == m2  # send_message queued after commit
    (event,) = events(settings)
    kind = _value(_fixture(fixture))["messages"][0]["type"]
    assert (event.outcome, event.recipient_id, event.kind) == (
        "message_2_queued",
        who.recipient_id,
        f"message:{kind}",
    )
    s = stats(client, cid)
    assert (s["interactions"], s["awaiting_reply"]) == (1, 2)

    # The queued Message 2 goes out, and the plan's status check follows (R1.1).
    provider = FakeProvider()
    run_dispatch(settings, provider, followups, message_ids=followups.sent)
    assert [(m.to, m.kind) for m in provider.sent] == [(who.phone, "message_2")]
    assert recipient_state(settings, who.recipient_id) == "message_2_sent"
    assert followups.checks == [(cid, settings.status_check_countdown_seconds)]
    assert_counters_match_rows(settings, cid)


def test_a_second_reply_queues_no_second_message_2(
    client: TestClient, settings: Settings, followups: RecordingFollowups
) -> None:
    cid, sent = launch_and_send(settings, 2)
    who = sent[0]
    ok(
        post_meta(
            client, message_body("webhook_text_reply.json", who.phone, who.provider_message_id)
        )
    )

    again = message_body(
        "webhook_text_reply.json", who.phone, who.provider_message_id, "Encore moi"
    )
    tally = ok(post_meta(client, again))
    reaction = message_body("webhook_reaction.json", who.phone, who.provider_message_id)
    ok(post_meta(client, reaction))

    assert tally["applied"] == 1
    assert len(message_2_ids(settings, who.recipient_id)) == 1
    assert len(followups.sent) == 1
    assert [e.outcome for e in events(settings)] == [
        "message_2_queued",
        "already_answered",
        "already_answered",
    ]
    assert stats(client, cid)["interactions"] == 1
    assert_counters_match_rows(settings, cid)


def test_a_reply_after_the_window_is_recorded_and_queues_nothing(
    client: TestClient, settings: Settings, followups: RecordingFollowups
) -> None:
    cid, sent = launch_and_send(settings, 2)
    who = sent[0]
    with session_scope(settings) as session:
        session.execute(
            update(Recipient)
            .where(Recipient.id == who.recipient_id)
            .values(window_closes_at=utcnow() - timedelta(seconds=1))
        )

    tally = ok(
        post_meta(
            client, message_body("webhook_text_reply.json", who.phone, who.provider_message_id)
        )
    )

    assert tally["applied"] == 1
    (event,) = events(settings)
    assert (event.outcome, event.matched, event.recipient_id) == (
        "late_reply",
        True,
        who.recipient_id,
    )
    assert message_2_ids(settings, who.recipient_id) == []
    assert followups.sent == []
    assert stats(client, cid)["interactions"] == 0
    # The sweep records what the reply could not: no interaction in the window (E3).
    with session_scope(settings) as session:
        assert sweeps.expire_windows(session) == 1
    assert recipient_state(settings, who.recipient_id) == "no_interaction"
    assert_counters_match_rows(settings, cid)


def test_the_quoted_message_picks_the_campaign_a_reply_belongs_to(
    client: TestClient, settings: Settings, followups: RecordingFollowups
) -> None:
    first_cid, category = launch(settings, 2)
    second_cid, _ = launch(settings, 0, category_id=category)
    run_dispatch(settings, FakeProvider())
    older = sent_messages(settings, first_cid)[0]
    newer = sent_messages(settings, second_cid)[0]
    assert older.phone == newer.phone

    ok(
        post_meta(
            client, message_body("webhook_text_reply.json", older.phone, older.provider_message_id)
        )
    )

    assert recipient_state(settings, older.recipient_id) == "replied"
    assert recipient_state(settings, newer.recipient_id) == "awaiting_reply"


# Stop keywords -----------------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["STOP", "arrêt", " Unsubscribe "])
def test_a_stop_keyword_opts_the_contact_out_everywhere(
    client: TestClient, settings: Settings, followups: RecordingFollowups, word: str
) -> None:
    sent_cid, category = launch(settings, 3)
    run_dispatch(settings, FakeProvider())  # campaign 1: Message 1s sent, awaiting replies
    queued_cid, _ = launch(settings, 0, category_id=category)  # campaign 2: recipients queued
    who = sent_messages(settings, sent_cid)[0]

    tally = ok(post_meta(client, message_body("webhook_text_reply.json", who.phone, text=word)))

    assert tally["applied"] == 1
    (event,) = events(settings)
    assert event.outcome == "opted_out"
    with session_scope(settings) as session:
        contact = session.scalars(select(Contact).where(Contact.phone == who.phone)).one()
        assert contact.opted_out_at is not None
        states = session.execute(
            select(Recipient.campaign_id, Recipient.state).where(Recipient.contact_id == contact.id)
        ).all()
    assert sorted(states) == [(sent_cid, "opted_out"), (queued_cid, "opted_out")]
    assert messages_in(settings, queued_cid, who.phone) == []  # its Message 1 was not created
    assert followups.sent == []
    assert stats(client, sent_cid)["opted_out"] == 1
    assert stats(client, queued_cid)["opted_out"] == 1

    # Its Message 1 is never created nor sent; the two other contacts' are.
    provider = FakeProvider()
    run_dispatch(settings, provider)
    assert sorted(m.to for m in provider.sent) == sorted({phone(1), phone(2)})
    assert messages_in(settings, queued_cid, who.phone) == []
    # A later reply from them changes nothing.
    ok(
        post_meta(
            client, message_body("webhook_text_reply.json", who.phone, who.provider_message_id)
        )
    )
    assert message_2_ids(settings, who.recipient_id) == []
    assert_counters_match_rows(settings, sent_cid)
    assert_counters_match_rows(settings, queued_cid)


def messages_in(settings: Settings, campaign_id: int, to: str) -> list[tuple[str, str | None]]:
    """(status, error code) of the campaign's messages to this phone."""
    with session_scope(settings) as session:
        return [
            (status, code)
            for status, code in session.execute(
                select(Message.status, Message.error_code)
                .join(Recipient, Recipient.id == Message.recipient_id)
                .join(Contact, Contact.id == Recipient.contact_id)
                .where(Contact.phone == to, Message.campaign_id == campaign_id)
            )
        ]


# Handshake, unknown provider ---------------------------------------------------------------------


def test_the_meta_handshake_over_http(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_VERIFY_TOKEN", "relance-verify-token")
    get_settings.cache_clear()
    good = {
        "hub.mode": "subscribe",
        "hub.verify_token": "relance-verify-token",
        "hub.challenge": "1158201444",
    }

    r = client.get("/webhooks/meta", params=good)
    assert (r.status_code, r.text) == (200, "1158201444")
    assert r.headers["content-type"].startswith("text/plain")

    r = client.get("/webhooks/meta", params={**good, "hub.verify_token": "guess"})
    assert r.status_code == 403
    assert "hub.verify_token" in r.json()["detail"]
    r = client.get("/webhooks/meta", params={k: v for k, v in good.items() if k != "hub.mode"})
    assert r.status_code == 400
    assert "hub.mode" in r.json()["detail"]


def test_an_unknown_provider_is_404_and_writes_nothing(
    client: TestClient, settings: Settings
) -> None:
    _, sent = launch_and_send(settings, 1)
    before = row_counts(settings, *TABLES)

    r = post_meta(client, status_body(sent[0], "delivered"), provider="telegram")

    assert r.status_code == 404
    assert "telegram" in r.json()["detail"]
    assert row_counts(settings, *TABLES) == before


# Wassenger and Twilio through the same endpoint --------------------------------------------------


def _wassenger(name: str, **data: Any) -> bytes:
    payload = json.loads((FIXTURES / "wassenger" / name).read_text(encoding="utf-8"))
    payload["data"].update(data)
    return json.dumps(payload).encode()


def test_wassenger_webhooks_with_the_shared_secret(
    client: TestClient,
    settings: Settings,
    followups: RecordingFollowups,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_provider(monkeypatch, "wassenger")
    cid, sent = launch_and_send(settings, 2)
    who = sent[0]
    ack = _wassenger("webhook_message_out_ack.json", id=who.provider_message_id, ack="read")
    headers = {"Content-Type": "application/json"}
    before = row_counts(settings, *TABLES)

    assert client.post("/webhooks/wassenger", content=ack, headers=headers).status_code == 401
    wrong = client.post("/webhooks/wassenger?secret=guess", content=ack, headers=headers)
    assert wrong.status_code == 403
    assert row_counts(settings, *TABLES) == before

    r = client.post(
        "/webhooks/wassenger?secret=wassenger-shared-secret", content=ack, headers=headers
    )
    assert ok(r)["matched"] == 1
    assert message_row(settings, who.message_id).status == "read"
    reply = _wassenger(
        "webhook_message_in_new.json",
        id=uuid.uuid4().hex.upper(),
        fromNumber=who.phone,
        quoted={"id": who.provider_message_id, "type": "text", "body": "Bonjour Ada0"},
    )
    r = client.post(
        "/webhooks/wassenger",
        content=reply,
        headers={**headers, "X-Webhook-Secret": "wassenger-shared-secret"},
    )
    assert ok(r)["matched"] == 1
    assert recipient_state(settings, who.recipient_id) == "replied"
    assert followups.sent == message_2_ids(settings, who.recipient_id)
    assert (stats(client, cid)["read"], stats(client, cid)["interactions"]) == (1, 1)


def test_wassenger_step_events_move_a_message_like_its_acks(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_provider(monkeypatch, "wassenger")
    _, sent = launch_and_send(settings, 1)
    who = sent[0]
    url = "/webhooks/wassenger?secret=wassenger-shared-secret"
    headers = {"Content-Type": "application/json"}

    delivered = _wassenger("webhook_message_out_delivered.json", id=who.provider_message_id)
    assert ok(client.post(url, content=delivered, headers=headers))["matched"] == 1
    assert message_row(settings, who.message_id).status == "delivered"
    read = _wassenger("webhook_message_out_read.json", id=who.provider_message_id)
    assert ok(client.post(url, content=read, headers=headers))["matched"] == 1
    assert message_row(settings, who.message_id).status == "read"
    # The same step again as an ack event is the same status: it changes nothing.
    ack = _wassenger("webhook_message_out_ack.json", id=who.provider_message_id, ack="read")
    assert ok(client.post(url, content=ack, headers=headers))["duplicates"] == 1


def _twilio_form(name: str, **fields: str) -> dict[str, str]:
    form = dict(parse_qsl((FIXTURES / "twilio" / name).read_text().strip(), keep_blank_values=True))
    form.update(fields)
    return form


def test_twilio_webhooks_with_the_url_signature(
    client: TestClient,
    settings: Settings,
    followups: RecordingFollowups,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = PROVIDER_ENV["twilio"]["TWILIO_AUTH_TOKEN"]
    monkeypatch.setenv("PUBLIC_URL", str(client.base_url))  # what Twilio signs: the public URL
    use_provider(monkeypatch, "twilio")
    url = f"{client.base_url}/webhooks/twilio"
    cid, sent = launch_and_send(settings, 2)
    who = sent[1]
    status = _twilio_form(
        "status_callback_delivered.txt",
        MessageSid=who.provider_message_id,
        SmsSid=who.provider_message_id,
        To=f"whatsapp:{who.phone}",
    )
    body = urlencode(status)
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    def post(body: str, signature: str | None) -> httpx.Response:
        headers = form if signature is None else {**form, "X-Twilio-Signature": signature}
        response: httpx.Response = client.post("/webhooks/twilio", content=body, headers=headers)
        return response

    before = row_counts(settings, *TABLES)
    assert post(body, None).status_code == 401
    assert post(body, twilio_signature("another-token", url, status.items())).status_code == 403
    elsewhere = twilio_signature(token, "https://elsewhere.example/webhooks/twilio", status.items())
    assert post(body, elsewhere).status_code == 403
    assert row_counts(settings, *TABLES) == before

    assert ok(post(body, twilio_signature(token, url, status.items())))["matched"] == 1
    assert message_row(settings, who.message_id).status == "delivered"
    inbound = _twilio_form(
        "inbound_text.txt",
        MessageSid=f"SM{uuid.uuid4().hex}",
        SmsSid=f"SM{uuid.uuid4().hex}",
        From=f"whatsapp:{who.phone}",
        WaId=who.phone.lstrip("+"),
    )
    answer = post(urlencode(inbound), twilio_signature(token, url, inbound.items()))
    # Twilio reads the answer to an incoming message as TwiML: an empty one does nothing.
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/xml")
    assert answer.text == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    assert recipient_state(settings, who.recipient_id) == "replied"
    assert followups.sent == message_2_ids(settings, who.recipient_id)
    assert (stats(client, cid)["delivered"], stats(client, cid)["interactions"]) == (1, 1)


# Only the configured provider's webhook exists ---------------------------------------------------


def post_status(
    client: TestClient, provider: str, sent: Sent, status: str, provider_message_id: str = ""
) -> httpx.Response:
    """A status about ``sent`` as the configured provider posts it, rightly authenticated."""
    wamid = provider_message_id or sent.provider_message_id
    response: httpx.Response
    if provider in ("meta", "simulator"):
        return post_meta(
            client, statuses_body(status_entry(wamid, status, sent.phone)), provider=provider
        )
    if provider == "wassenger":
        body = _wassenger("webhook_message_out_ack.json", id=wamid, ack=status)
        secret = PROVIDER_ENV["wassenger"]["WASSENGER_WEBHOOK_SECRET"]
        response = client.post(
            f"/webhooks/wassenger?secret={secret}",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        return response
    form = _twilio_form(
        "status_callback_delivered.txt",
        MessageSid=wamid,
        SmsSid=wamid,
        MessageStatus=status,
        SmsStatus=status,
        To=f"whatsapp:{sent.phone}",
    )
    token = PROVIDER_ENV["twilio"]["TWILIO_AUTH_TOKEN"]
    signature = twilio_signature(token, f"{client.base_url}/webhooks/twilio", form.items())
    response = client.post(
        "/webhooks/twilio",
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    return response


def opted_out(settings: Settings, to: str) -> bool:
    with session_scope(settings) as session:
        contact = session.scalars(select(Contact).where(Contact.phone == to)).one()
        return contact.opted_out_at is not None


@pytest.mark.parametrize("provider", ["meta", "twilio", "wassenger"])
def test_with_a_real_provider_the_simulator_route_is_404_and_changes_nothing(
    client: TestClient,
    settings: Settings,
    followups: RecordingFollowups,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
) -> None:
    """What was forged: a STOP and a reply signed with the simulator's public secret."""
    use_provider(monkeypatch, provider)
    cid, sent = launch_and_send(settings, 2)
    stopper, replier = sent
    forged = [
        message_body("webhook_text_reply.json", stopper.phone, text="STOP"),
        message_body("webhook_text_reply.json", replier.phone, replier.provider_message_id),
    ]
    other_routes = [p for p in ("simulator", "meta", "twilio", "wassenger") if p != provider]
    before, stats_before = row_counts(settings, *TABLES), stats(client, cid)

    for payload in forged:
        body = json.dumps(payload).encode()
        for secret in (SIMULATOR_APP_SECRET, get_settings().meta_app_secret):
            for route in other_routes:
                r = post_meta(client, body, provider=route, signature=sign(body, secret))
                assert r.status_code == 404, (route, r.text)
        if provider == "meta":  # its own route: the public secret is not Meta's
            r = post_meta(client, body, signature=sign(body, SIMULATOR_APP_SECRET))
            assert r.status_code == 403
    handshake = {"hub.mode": "subscribe", "hub.challenge": "42"}
    handshake["hub.verify_token"] = PROVIDER_ENV["meta"]["META_VERIFY_TOKEN"]
    r = client.get("/webhooks/meta", params=handshake)
    assert r.status_code == (200 if provider == "meta" else 404)

    assert row_counts(settings, *TABLES) == before
    assert stats(client, cid) == stats_before
    assert not opted_out(settings, stopper.phone)
    assert recipient_state(settings, stopper.recipient_id) == "awaiting_reply"
    assert recipient_state(settings, replier.recipient_id) == "awaiting_reply"
    assert message_2_ids(settings, replier.recipient_id) == []
    assert followups.sent == []
    # The configured provider's own route still works.
    assert ok(post_status(client, provider, replier, "delivered")) == {
        "received": 1,
        "applied": 1,
        "matched": 1,
    }
    assert message_row(settings, replier.message_id).status == "delivered"


def test_with_the_simulator_only_its_route_exists(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_provider(monkeypatch, "simulator")
    _, sent = launch_and_send(settings, 1)
    before = row_counts(settings, *TABLES)

    for route in ("meta", "twilio", "wassenger"):
        assert post_meta(client, status_body(sent[0], "read"), provider=route).status_code == 404
    assert client.get("/webhooks/meta", params={"hub.mode": "subscribe"}).status_code == 404

    assert row_counts(settings, *TABLES) == before
    assert ok(post_status(client, "simulator", sent[0], "read"))["matched"] == 1


# Odd events: stored as rejected, the rest of the batch applied -----------------------------------

LONG_ID = "wamid." + "A" * 100_000


def reply_message(sent: Sent, text: str | None = None) -> dict[str, Any]:
    """One ``messages[]`` element: the contact answers its Message 1."""
    body = message_body("webhook_text_reply.json", sent.phone, sent.provider_message_id, text)
    return _value(body)["messages"][0]  # type: ignore[no-any-return]


def _has_nul(value: object) -> bool:
    return "\\u0000" in json.dumps(value)  # how JSON writes a NUL


def test_a_batch_with_odd_events_applies_the_genuine_ones_and_stores_the_odd_rejected(
    client: TestClient, settings: Settings, followups: RecordingFollowups
) -> None:
    cid, sent = launch_and_send(settings, 3)
    genuine, replier, bystander = sent
    payload = statuses_body(
        status_entry(genuine.provider_message_id, "delivered", genuine.phone),
        status_entry(LONG_ID, "read", bystander.phone),
        status_entry(bystander.provider_message_id + "\x00", "read", bystander.phone),
    )
    odd_reply = reply_message(bystander)
    odd_reply["id"] = "wamid.IN\x00" + uuid.uuid4().hex
    _value(payload)["messages"] = [reply_message(replier, "Oui\x00 merci"), odd_reply]
    body = json.dumps(payload).encode()  # NUL travels as \u0000, as JSON writes it

    tally = ok(post_meta(client, body))

    assert tally == {"received": 5, "applied": 2, "matched": 2, "rejected": 3}
    assert message_row(settings, genuine.message_id).status == "delivered"
    assert recipient_state(settings, replier.recipient_id) == "replied"
    assert followups.sent == message_2_ids(settings, replier.recipient_id) != []
    assert message_row(settings, bystander.message_id).status == "sent"
    assert recipient_state(settings, bystander.recipient_id) == "awaiting_reply"
    stored = events(settings)
    assert len(stored) == 5
    outcomes = sorted(e.outcome or "" for e in stored)
    assert outcomes[:2] == ["delivered", "message_2_queued"]
    assert [o.split(" (")[0] for o in outcomes[2:]] == [
        "rejected: event id holds a control character",
        "rejected: message id holds a control character",
        "rejected: message id longer than 200 characters",
    ]
    for event in stored:
        assert len(event.dedup_key) <= 300 and "\x00" not in event.dedup_key
        assert not _has_nul(event.payload)
        assert event.matched == (not (event.outcome or "").startswith("rejected"))
    (applied_reply,) = [e for e in stored if e.outcome == "message_2_queued"]
    assert applied_reply.payload["text"]["body"] == "Oui merci"
    # Short plain keys stay readable; a long or odd one is stored as its digest.
    keys = {e.outcome: e.dedup_key for e in stored}
    assert keys["delivered"] == f"meta:status:{genuine.provider_message_id}:delivered"
    assert all(
        re.fullmatch("meta:sha256:[0-9a-f]{64}", key)
        for outcome, key in keys.items()
        if outcome and outcome.startswith("rejected")
    )
    # The provider posts it again: every event, the odd ones too, is a duplicate.
    assert ok(post_meta(client, body)) == {"received": 5, "duplicates": 5}
    assert len(events(settings)) == 5
    assert_counters_match_rows(settings, cid)


@pytest.mark.parametrize("provider", ["twilio", "wassenger"])
def test_an_odd_twilio_or_wassenger_event_is_answered_200_and_stored_rejected(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    use_provider(monkeypatch, provider)
    cid, sent = launch_and_send(settings, 1)
    (who,) = sent

    for odd_id in ("SM" + "a" * 100_000, who.provider_message_id + "\x00"):
        assert ok(post_status(client, provider, who, "read", odd_id)) == {
            "received": 1,
            "rejected": 1,
        }
    assert ok(post_status(client, provider, who, "delivered"))["matched"] == 1

    assert message_row(settings, who.message_id).status == "delivered"
    stored = events(settings)
    assert [e.outcome.split(" (")[0] for e in stored if e.outcome] == [
        "rejected: message id longer than 200 characters",
        "rejected: message id holds a control character",
        "delivered",
    ]
    assert all(len(e.dedup_key) <= 300 and not _has_nul(e.payload) for e in stored)
    assert_counters_match_rows(settings, cid)


def test_an_event_the_database_refuses_is_stored_rejected_and_the_rest_is_applied(
    client: TestClient,
    settings: Settings,
    followups: RecordingFollowups,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cid, sent = launch_and_send(settings, 4)
    target, first, refused, last = sent
    real = answers.record_interaction  # what inbound calls

    def refused_by_the_database(
        session: Any, settings_: Settings, followups_: Any, from_phone: str, *args: Any, **kw: Any
    ) -> Any:
        answer = real(session, settings_, followups_, from_phone, *args, **kw)  # its Message 2
        if from_phone == refused.phone:  # NOT NULL violated: IntegrityError on both databases
            session.execute(
                update(Message)
                .where(Message.recipient_id == refused.recipient_id)
                .values(status=None)
                .execution_options(synchronize_session=False)
            )
        return answer

    monkeypatch.setattr(inbound, "record_interaction", refused_by_the_database)
    payload = statuses_body(status_entry(target.provider_message_id, "delivered", target.phone))
    _value(payload)["messages"] = [reply_message(s) for s in (first, refused, last)]

    tally = ok(post_meta(client, payload))

    assert tally == {"received": 4, "applied": 3, "matched": 3, "rejected": 1}
    assert message_row(settings, target.message_id).status == "delivered"
    assert recipient_state(settings, first.recipient_id) == "replied"
    assert recipient_state(settings, last.recipient_id) == "replied"
    assert recipient_state(settings, refused.recipient_id) == "awaiting_reply"
    assert message_2_ids(settings, refused.recipient_id) == []
    # The refused event's Message 2 was rolled back with it and is never sent; the Message 2
    # queued before its savepoint, and after it, are.
    assert followups.sent == [
        *message_2_ids(settings, first.recipient_id),
        *message_2_ids(settings, last.recipient_id),
    ]
    assert len(followups.sent) == 2
    outcomes = [e.outcome or "" for e in events(settings)]
    assert len(outcomes) == 4
    assert sum(o.startswith("rejected: the database refused it") for o in outcomes) == 1
    assert_counters_match_rows(settings, cid)
