"""Every Cloud API webhook shape through the real endpoint, on SQLite and PostgreSQL (issue 14).

Each body in tests/fixtures/meta is Meta's documented shape (one per message type and update
field), aimed at one recipient of a launched campaign, signed, and posted to /webhooks/meta.
What counts as an answer moves the recipient as before; what does not changes nothing but is
stored once with why; a stop button or preference opts the contact out, a resume back in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.db import session_scope
from relance.models import Contact, Recipient
from tests.integration.test_webhooks_api import (
    Sent,
    events,
    launch,
    launch_and_send,
    message_2_ids,
    ok,
    post_meta,
    recipient_state,
    sent_messages,
    stats,
    use_provider,
)
from tests.support.engine import FakeProvider, assert_counters_match_rows, run_dispatch

FIXTURES = Path(__file__).parents[1] / "fixtures" / "meta"
# What the fixtures are about: one contact, and our Message 1 to it.
FIXTURE_PHONE = "33612345678"
FIXTURE_WAMID = "wamid.HBgLMzM2MTIzNDU2NzgVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA"
ANSWER = "message_2_queued"
NOTED = {"received": 1, "applied": 1, "noted": 1}
MATCHED = {"received": 1, "applied": 1, "matched": 1}


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return use_provider(monkeypatch, "meta")


def body_for(fixture: str, who: Sent) -> bytes:
    """The fixture, about ``who`` and our Message 1 to it instead of the recorded ones."""
    text = (FIXTURES / fixture).read_text(encoding="utf-8")
    text = text.replace(FIXTURE_PHONE, who.phone.lstrip("+"))
    return text.replace(FIXTURE_WAMID, who.provider_message_id).encode()


def contact_of(settings: Settings, phone: str) -> Contact:
    with session_scope(settings) as session:
        contact = session.scalars(select(Contact).where(Contact.phone == phone)).one()
        session.expunge(contact)
        return contact


# fixture, inbound_events.kind, stored outcome (a prefix for long ones), the recipient's state.
CASES: list[tuple[str, str, str, str]] = [
    ("webhook_text_reply.json", "message:text", ANSWER, "replied"),
    ("webhook_button_reply.json", "message:button", ANSWER, "replied"),
    ("webhook_interactive_reply.json", "message:interactive", ANSWER, "replied"),
    ("webhook_interactive_list_reply.json", "message:interactive", ANSWER, "replied"),
    ("webhook_interactive_nfm_reply.json", "message:interactive", ANSWER, "replied"),
    ("webhook_image.json", "message:image", ANSWER, "replied"),
    ("webhook_video.json", "message:video", ANSWER, "replied"),
    ("webhook_audio_voice.json", "message:audio", ANSWER, "replied"),
    ("webhook_document.json", "message:document", ANSWER, "replied"),
    ("webhook_sticker.json", "message:sticker", ANSWER, "replied"),
    ("webhook_location.json", "message:location", ANSWER, "replied"),
    ("webhook_contacts.json", "message:contacts", ANSWER, "replied"),
    ("webhook_order.json", "message:order", ANSWER, "replied"),
    ("webhook_reaction.json", "message:reaction", ANSWER, "replied"),
    ("webhook_unsupported.json", "message:unsupported", ANSWER, "replied"),
    (
        "webhook_reaction_removed.json",
        "message:reaction",
        "not_an_answer: reaction removed",
        "awaiting_reply",
    ),
    (
        "webhook_system_user_changed_number.json",
        "message:system",
        "not_an_answer: system notice (user_changed_number)",
        "awaiting_reply",
    ),
    (
        "webhook_system_customer_identity_changed.json",
        "message:system",
        "not_an_answer: system notice (customer_identity_changed)",
        "awaiting_reply",
    ),
    (
        "webhook_revoke.json",
        "message:revoke",
        "not_an_answer: the contact deleted a message",
        "awaiting_reply",
    ),
    (
        "webhook_edit.json",
        "message:edit",
        "not_an_answer: edit of an earlier message",
        "awaiting_reply",
    ),
    (
        "webhook_errors.json",
        "notice:errors",
        "not_an_answer: error report (130429 Rate limit hit)",
        "awaiting_reply",
    ),
    (
        "webhook_smb_message_echoes.json",
        "notice:smb_message_echoes",
        "not_an_answer: echo of a message the business sent (text)",
        "awaiting_reply",
    ),
    ("webhook_calls.json", "notice:calls", "not_an_answer: call (connect)", "awaiting_reply"),
    # The account's and the numbers' news change the senders (issue 19), not the recipients.
    (
        "webhook_account_update.json",
        "sender:account",
        "sender_signal (ACCOUNT_VIOLATION for the account; sender 1: slowed (flagged by Meta: "
        "SCAM)",
        "awaiting_reply",
    ),
    (
        "webhook_account_update_restriction.json",
        "sender:account",
        "sender_signal (ACCOUNT_RESTRICTION for the account; sender 1: stopped (Meta restricted "
        "the account: RESTRICTED_BIZ_INITIATED_MESSAGING)",
        "awaiting_reply",
    ),
    (
        "webhook_phone_number_quality_update.json",
        "sender:quality",
        "sender_signal (FLAGGED for 15550783881; sender 1: slowed (flagged by Meta)",
        "awaiting_reply",
    ),
    (
        "webhook_message_template_status_update.json",
        "template:status",
        "template_signal (status of relance_invitation fr PAUSED: FIRST_PAUSE · Your WhatsApp",
        "awaiting_reply",
    ),
    (
        "webhook_message_template_quality_update.json",
        "template:quality",
        "template_signal (quality of relance_invitation fr GREEN -> YELLOW)",
        "awaiting_reply",
    ),
    (
        "webhook_template_category_update.json",
        "template:category",
        "template_signal (category of relance_invitation fr UTILITY -> MARKETING)",
        "awaiting_reply",
    ),
    ("webhook_button_stop_promotions.json", "message:button", "opted_out", "opted_out"),
    ("webhook_user_preferences_stop.json", "preference", "opted_out", "opted_out"),
    (
        "webhook_user_preferences_resume.json",
        "preference",
        "opted_in (was not opted out)",
        "awaiting_reply",
    ),
]


@pytest.mark.parametrize(("fixture", "kind", "outcome", "state"), CASES, ids=[c[0] for c in CASES])
def test_each_documented_shape_is_stored_once_with_its_effect(
    client: TestClient,
    settings: Settings,
    followups: RecordingFollowups,
    fixture: str,
    kind: str,
    outcome: str,
    state: str,
) -> None:
    cid, sent = launch_and_send(settings, 3)
    who = sent[1]
    body = body_for(fixture, who)

    tally = ok(post_meta(client, body))

    (event,) = events(settings)
    assert event.kind == kind
    assert event.outcome is not None and event.outcome.startswith(outcome), event.outcome
    assert recipient_state(settings, who.recipient_id) == state
    assert recipient_state(settings, sent[0].recipient_id) == "awaiting_reply"
    m2 = message_2_ids(settings, who.recipient_id)
    assert followups.sent == m2
    s = stats(client, cid)
    if outcome == ANSWER:
        assert tally == MATCHED
        assert len(m2) == 1 and event.recipient_id == who.recipient_id
        assert (s["interactions"], s["awaiting_reply"], s["opted_out"]) == (1, 2, 0)
    elif outcome == "opted_out":
        assert tally == MATCHED
        assert m2 == []
        assert (s["interactions"], s["awaiting_reply"], s["opted_out"]) == (0, 2, 1)
        assert contact_of(settings, who.phone).opted_out_at is not None
    else:  # stored with why, and nothing else
        assert tally == (MATCHED if kind == "preference" else NOTED)
        assert m2 == [] and event.recipient_id is None
        assert (s["interactions"], s["awaiting_reply"], s["opted_out"]) == (0, 3, 0)
    # Meta retries the same body: a duplicate, which changes nothing.
    assert ok(post_meta(client, body)) == {"received": 1, "duplicates": 1}
    assert len(events(settings)) == 1
    assert stats(client, cid) == s
    assert_counters_match_rows(settings, cid)


# The three reproductions ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fixture",
    ["webhook_system_user_changed_number.json", "webhook_system_customer_identity_changed.json"],
)
def test_a_system_notice_is_not_an_answer(
    client: TestClient, settings: Settings, followups: RecordingFollowups, fixture: str
) -> None:
    """WhatsApp wrote it, not the contact: no Message 2 (to a number it may no longer use)."""
    cid, sent = launch_and_send(settings, 2)
    who = sent[0]

    ok(post_meta(client, body_for(fixture, who)))

    assert recipient_state(settings, who.recipient_id) == "awaiting_reply"
    assert message_2_ids(settings, who.recipient_id) == []
    assert followups.sent == []
    assert stats(client, cid)["interactions"] == 0
    (event,) = events(settings)
    assert event.outcome is not None and event.outcome.startswith("not_an_answer: system notice")
    # A real answer afterwards is still one.
    ok(post_meta(client, body_for("webhook_text_reply.json", who)))
    assert recipient_state(settings, who.recipient_id) == "replied"


@pytest.mark.parametrize(
    ("fixture", "source"),
    [
        ("webhook_button_stop_promotions.json", "button"),
        ("webhook_user_preferences_stop.json", "preference"),
    ],
)
def test_metas_stop_button_and_preference_opt_the_contact_out_everywhere(
    client: TestClient,
    settings: Settings,
    followups: RecordingFollowups,
    fixture: str,
    source: str,
) -> None:
    sent_cid, category = launch(settings, 3)
    run_dispatch(settings, FakeProvider())  # campaign 1: Message 1s sent, awaiting replies
    queued_cid, _ = launch(settings, 0, category_id=category)  # campaign 2: recipients queued
    who = sent_messages(settings, sent_cid)[0]

    ok(post_meta(client, body_for(fixture, who)))

    assert followups.sent == []
    assert message_2_ids(settings, who.recipient_id) == []
    contact = contact_of(settings, who.phone)
    assert contact.opted_out_at is not None
    assert (contact.opt_source, contact.opt_changed_at) == (source, contact.opted_out_at)
    with session_scope(settings) as session:
        states = session.execute(
            select(Recipient.campaign_id, Recipient.state).where(Recipient.contact_id == contact.id)
        ).all()
    assert sorted(states) == [(sent_cid, "opted_out"), (queued_cid, "opted_out")]
    assert stats(client, sent_cid)["opted_out"] == stats(client, queued_cid)["opted_out"] == 1
    # Its Message 1 of campaign 2 never goes; the two others' do.
    provider = FakeProvider()
    run_dispatch(settings, provider)
    assert who.phone not in {m.to for m in provider.sent}
    assert len(provider.sent) == 2
    # No later campaign sends it Message 1 either.
    later_cid, _ = launch(settings, 0, category_id=category)
    assert stats(client, later_cid)["skipped_opted_out"] == 1
    assert_counters_match_rows(settings, sent_cid)
    assert_counters_match_rows(settings, queued_cid)


@pytest.mark.parametrize("fixture", ["webhook_reaction_removed.json", "webhook_revoke.json"])
def test_a_withdrawal_is_not_an_answer(
    client: TestClient, settings: Settings, followups: RecordingFollowups, fixture: str
) -> None:
    """A reaction removed, a message deleted: the contact took back, it did not answer."""
    cid, sent = launch_and_send(settings, 2)
    who = sent[1]

    ok(post_meta(client, body_for(fixture, who)))

    assert recipient_state(settings, who.recipient_id) == "awaiting_reply"
    assert message_2_ids(settings, who.recipient_id) == []
    assert followups.sent == []
    assert stats(client, cid)["interactions"] == 0
    assert_counters_match_rows(settings, cid)


# Opting back in ---------------------------------------------------------------------------------


def test_a_resume_after_a_stop_makes_the_contact_reachable_by_the_next_launch(
    client: TestClient, settings: Settings
) -> None:
    first_cid, category = launch(settings, 2)
    run_dispatch(settings, FakeProvider())
    who = sent_messages(settings, first_cid)[0]
    ok(post_meta(client, body_for("webhook_user_preferences_stop.json", who)))
    stopped_cid, _ = launch(settings, 0, category_id=category)
    assert stats(client, stopped_cid)["skipped_opted_out"] == 1

    resume = body_for("webhook_user_preferences_resume.json", who)
    assert ok(post_meta(client, resume)) == MATCHED

    assert events(settings)[-1].outcome == "opted_in"
    contact = contact_of(settings, who.phone)
    assert (contact.opted_out_at, contact.opt_source) == (None, "preference")
    # Its recipients that ended opted_out stay so (final); the next launch includes it.
    assert recipient_state(settings, who.recipient_id) == "opted_out"
    next_cid, _ = launch(settings, 0, category_id=category)
    assert stats(client, next_cid)["skipped_opted_out"] == 0
    provider = FakeProvider()
    run_dispatch(settings, provider)
    assert who.phone in {m.to for m in provider.sent if m.kind == "message_1"}
    history = client.get(f"/api/contacts/{contact.id}").json()["opt_history"]
    assert [(h["opted_out"], h["source"]) for h in history] == [
        (False, "preference"),
        (True, "preference"),
    ]


def test_the_api_opts_out_and_in_with_source_api(client: TestClient, settings: Settings) -> None:
    cid, sent = launch_and_send(settings, 2)
    who = sent[0]
    contact_id = contact_of(settings, who.phone).id
    ok(post_meta(client, body_for("webhook_button_stop_promotions.json", who)))
    listed = client.get("/api/contacts").json()["items"]
    assert [(c["opted_out"], c["opt_source"]) for c in listed] == [(True, "button"), (False, None)]

    back_in = client.patch(f"/api/contacts/{contact_id}", json={"opted_out": False})
    assert back_in.status_code == 200
    body: dict[str, Any] = back_in.json()
    assert (body["opted_out"], body["opted_out_at"], body["opt_source"]) == (False, None, "api")
    out_again = client.patch(f"/api/contacts/{contact_id}", json={"opted_out": True}).json()
    assert (out_again["opted_out"], out_again["opt_source"]) == (True, "api")
    assert [(h["opted_out"], h["source"]) for h in out_again["opt_history"]] == [
        (True, "api"),
        (False, "api"),
        (True, "button"),
    ]
    # The same again changes nothing: no new history entry.
    again = client.patch(f"/api/contacts/{contact_id}", json={"opted_out": True}).json()
    assert again["opt_history"] == out_again["opt_history"]
    assert again["opt_changed_at"] == out_again["opt_changed_at"]
    assert_counters_match_rows(settings, cid)


def test_a_batch_mixing_every_field_is_applied_in_one_post(
    client: TestClient, settings: Settings, followups: RecordingFollowups
) -> None:
    """Meta batches entries of several fields; each is stored with its own outcome."""
    _, sent = launch_and_send(settings, 3)
    replier, stopper = sent[0], sent[1]
    payloads: list[dict[str, Any]] = [
        json.loads(body_for("webhook_text_reply.json", replier)),
        json.loads(body_for("webhook_user_preferences_stop.json", stopper)),
        json.loads(body_for("webhook_message_template_status_update.json", replier)),
        json.loads(body_for("webhook_calls.json", replier)),
        json.loads(body_for("webhook_errors.json", replier)),
    ]
    batch = {"object": "whatsapp_business_account", "entry": [p["entry"][0] for p in payloads]}

    tally = ok(post_meta(client, batch))

    assert tally == {"received": 5, "applied": 5, "matched": 2, "noted": 3}
    assert recipient_state(settings, replier.recipient_id) == "replied"
    assert recipient_state(settings, stopper.recipient_id) == "opted_out"
    assert len(followups.sent) == 1
    assert sorted(e.kind for e in events(settings)) == [
        "message:text",
        "notice:calls",
        "notice:errors",
        "preference",
        "template:status",
    ]
