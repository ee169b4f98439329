"""Send errors classified and shown, on SQLite and PostgreSQL (issue 14, items 3 and 6).

Sends go through the real Meta adapter to the fake Graph API, which answers each error code
with Meta's own body; failures Meta finds after accepting a message come as signed ``failed``
status webhooks through the real endpoint. The recipient's state, its reason and code, the
message's code and Meta's words, the counters and the API's answers are checked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from relance.campaigns import answers, sweeps
from relance.campaigns.dispatch import claim, dispatch
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.db import session_scope
from relance.fakes.graph import FakeGraph
from relance.models import Contact, Message, Recipient
from relance.pacing.limiter import make_limiter
from relance.providers import meta_errors
from relance.providers.meta import MetaProvider
from relance.providers.twilio import callback_url_for
from relance.providers.twilio_webhooks import twilio_signature
from tests.integration.test_webhooks_api import (
    PROVIDER_ENV,
    Sent,
    _twilio_form,
    launch,
    message_row,
    ok,
    post_meta,
    recipient_state,
    sent_messages,
    stats,
    status_entry,
    statuses_body,
    use_provider,
)
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    campaign_row,
    make_campaign,
    phone,
    run_dispatch,
    seed_contacts,
)

LIMITED, OPTED_OUT, NO_WINDOW, UNDELIVERABLE = 131049, 131050, 131047, 131026


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """conftest's settings (SQLite, then PostgreSQL) with the ``meta`` provider."""
    return use_provider(monkeypatch, "meta")


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as fake:
        yield fake


def send_through(settings: Settings, graph: FakeGraph, errors: dict[int, int]) -> None:
    """Dispatch everything due through MetaProvider to the fake Graph API, which answers the
    sends to contact i with Meta's error ``errors[i]``."""
    graph.errors = {phone(i).lstrip("+"): code for i, code in errors.items()}
    cfg = settings.model_copy(update={"meta_graph_url": graph.url})
    provider = MetaProvider(cfg)
    try:
        dispatch(cfg, provider, make_limiter(cfg), RecordingFollowups(), budget_seconds=30)
    finally:
        provider.close()


def recipients(client: TestClient, campaign_id: int) -> dict[str, dict[str, Any]]:
    r = client.get(f"/api/campaigns/{campaign_id}/recipients")
    assert r.status_code == 200, r.text
    return {item["phone"]: item for item in r.json()["items"]}


def failed_status(sent: Sent, code: int) -> dict[str, Any]:
    """Meta's ``failed`` status about ``sent``, its ``errors[]`` as Meta writes them."""
    entry = status_entry(sent.provider_message_id, "failed", sent.phone, sent.message_id)
    entry["errors"] = [meta_errors.status_error(code)]
    return statuses_body(entry)


def test_send_errors_are_classified_kept_and_shown_per_recipient(
    client: TestClient, settings: Settings, graph: FakeGraph
) -> None:
    cid, _ = launch(settings, 4)

    send_through(settings, graph, {0: LIMITED, 1: OPTED_OUT, 2: NO_WINDOW})

    assert graph.rejected == 3 and len(graph.accepted) == 1
    shown = recipients(client, cid)
    limited = shown[phone(0)]
    assert (limited["state"], limited["last_error_code"]) == ("failed", "131049")
    assert limited["last_error"].startswith("limited by Meta")
    title, details = meta_errors.BY_CODE[LIMITED].title, meta_errors.BY_CODE[LIMITED].details
    assert title in limited["last_error"] and details in limited["last_error"]
    stopped = shown[phone(1)]
    assert (stopped["state"], stopped["last_error_code"]) == ("opted_out", "131050")
    no_window = shown[phone(2)]
    assert (no_window["state"], no_window["last_error_code"]) == ("failed", "131047")
    assert "a template is needed" in no_window["last_error"]
    assert shown[phone(3)]["state"] == "awaiting_reply"
    assert shown[phone(3)]["last_error_code"] is None
    with session_scope(settings) as session:
        message = session.scalars(
            select(Message).where(Message.recipient_id == limited["id"])
        ).one()
        assert (message.status, message.error_code) == ("failed", "131049")
        assert message.error_text is not None
        assert f"(#131049) {title} | {details} | fbtrace_id=" in message.error_text
        contact = session.scalars(select(Contact).where(Contact.phone == phone(1))).one()
        assert contact.opted_out_at is not None  # Meta said so: like a stop keyword
        assert contact.opt_source == "send_error"
    s = stats(client, cid)
    assert (s["failed"], s["limited"], s["opted_out"], s["awaiting_reply"]) == (2, 1, 1, 1)
    assert_counters_match_rows(settings, cid)


def test_retry_limited_sends_again_only_the_limited_ones(
    client: TestClient, settings: Settings, graph: FakeGraph
) -> None:
    cid, _ = launch(settings, 3)
    send_through(settings, graph, {0: LIMITED, 1: UNDELIVERABLE})
    assert (stats(client, cid)["failed"], stats(client, cid)["limited"]) == (2, 1)

    r = client.post(f"/api/campaigns/{cid}/retry-limited")

    assert r.status_code == 200, r.text
    assert r.json() == {"campaign_id": cid, "retried": 1, "status": "sending"}
    shown = recipients(client, cid)
    assert shown[phone(0)]["state"] == "queued"
    assert (shown[phone(0)]["last_error"], shown[phone(0)]["last_error_code"]) == (None, None)
    assert shown[phone(1)]["state"] == "failed"  # not a limit: retry-failed's business
    assert (stats(client, cid)["failed"], stats(client, cid)["limited"]) == (1, 0)
    assert_counters_match_rows(settings, cid)
    again = client.post(f"/api/campaigns/{cid}/retry-limited")
    assert again.status_code == 409
    assert "no limited by Meta recipient" in again.json()["detail"]

    send_through(settings, graph, {})  # Meta lets it through this time

    assert recipients(client, cid)[phone(0)]["state"] == "awaiting_reply"
    assert client.post(f"/api/campaigns/{cid}/retry-failed").json()["retried"] == 1
    assert_counters_match_rows(settings, cid)


def test_retry_failed_retries_the_limited_ones_too_and_counts_them_out(
    client: TestClient, settings: Settings, graph: FakeGraph
) -> None:
    cid, _ = launch(settings, 2)
    send_through(settings, graph, {0: LIMITED, 1: UNDELIVERABLE})

    assert client.post(f"/api/campaigns/{cid}/retry-failed").json()["retried"] == 2

    s = stats(client, cid)
    assert (s["failed"], s["limited"], s["pending"]) == (0, 0, 2)
    assert_counters_match_rows(settings, cid)


@pytest.mark.parametrize("message_2", ["Merci !", None])
def test_a_limit_meta_reports_after_accepting_the_send_fails_the_recipient(
    client: TestClient, settings: Settings, message_2: str | None
) -> None:
    """131049 mostly comes as a ``failed`` status after a 200: also after ``done``, in a
    campaign without Message 2 (before, the recipient stayed ``done`` and nothing counted it)."""
    cid, _ = launch(settings, 1, message_2=message_2)
    run_dispatch(settings, FakeProvider())
    (sent,) = sent_messages(settings, cid)
    assert recipient_state(settings, sent.recipient_id) == (
        "awaiting_reply" if message_2 else "done"
    )

    ok(post_meta(client, failed_status(sent, LIMITED)))

    assert recipient_state(settings, sent.recipient_id) == "failed"
    (shown,) = recipients(client, cid).values()
    assert shown["last_error_code"] == "131049"
    assert shown["last_error"].startswith("limited by Meta")
    s = stats(client, cid)
    assert (s["failed"], s["limited"], s["completed"]) == (1, 1, True)
    assert_counters_match_rows(settings, cid)
    assert client.post(f"/api/campaigns/{cid}/retry-limited").json()["retried"] == 1
    assert stats(client, cid)["status"] == "sending"


def test_an_opt_out_meta_reports_after_the_send_opts_the_contact_out(
    client: TestClient, settings: Settings
) -> None:
    cid, category = launch(settings, 2)
    run_dispatch(settings, FakeProvider())
    sent = sent_messages(settings, cid)

    ok(post_meta(client, failed_status(sent[0], OPTED_OUT)))

    assert recipient_state(settings, sent[0].recipient_id) == "opted_out"
    assert recipient_state(settings, sent[1].recipient_id) == "awaiting_reply"
    shown = recipients(client, cid)[sent[0].phone]
    assert shown["last_error_code"] == "131050"
    with session_scope(settings) as session:
        contact = session.scalars(select(Contact).where(Contact.phone == sent[0].phone)).one()
        assert contact.opted_out_at is not None
    later_cid, _ = launch(settings, 0, category_id=category)  # no later campaign reaches it
    assert campaign_row(settings, later_cid).skipped_opted_out == 1
    assert_counters_match_rows(settings, cid)


def _replied_and_sent_message_2(settings: Settings, n: int) -> tuple[int, list[Sent]]:
    cid, _ = launch(settings, n)
    run_dispatch(settings, FakeProvider())
    sent = sent_messages(settings, cid)
    followups = RecordingFollowups()
    with session_scope(settings) as session:
        for who in sent:
            applied = answers.record_interaction(session, settings, followups, who.phone)
            assert applied.outcome == "message_2_queued"
    run_dispatch(settings, FakeProvider(), message_ids=followups.sent)
    return cid, sent


def message_2_of(settings: Settings, recipient_id: int) -> Sent:
    with session_scope(settings) as session:
        message = session.scalars(
            select(Message).where(Message.recipient_id == recipient_id, Message.kind == "message_2")
        ).one()
        contact_phone = session.scalar(
            select(Contact.phone)
            .join(Recipient, Recipient.contact_id == Contact.id)
            .where(Recipient.id == recipient_id)
        )
    assert message.provider_message_id is not None and contact_phone is not None
    return Sent(message.id, message.provider_message_id, contact_phone, recipient_id)


def test_a_message_2_reported_failed_after_sent_fails_its_recipient_and_the_campaign_stays_done(
    client: TestClient, settings: Settings
) -> None:
    cid, sent = _replied_and_sent_message_2(settings, 2)
    done = campaign_row(settings, cid)
    assert (done.status, done.n_message_2_sent) == ("completed", 2)
    m2 = message_2_of(settings, sent[0].recipient_id)
    ok(
        post_meta(
            client, statuses_body(status_entry(m2.provider_message_id, "delivered", m2.phone))
        )
    )

    ok(post_meta(client, failed_status(m2, UNDELIVERABLE)))

    assert recipient_state(settings, sent[0].recipient_id) == "failed"
    assert message_row(settings, m2.message_id).status == "failed"
    shown = recipients(client, cid)[m2.phone]
    assert shown["last_error_code"] == "131026"
    assert meta_errors.BY_CODE[UNDELIVERABLE].title in shown["last_error"]
    after = campaign_row(settings, cid)
    assert (after.status, after.completed_at) == ("completed", done.completed_at)
    s = stats(client, cid)
    assert (s["message_2_sent"], s["failed"], s["finished"], s["total"]) == (1, 1, 2, 2)
    assert_counters_match_rows(settings, cid)
    with session_scope(settings) as session:  # the status check leaves it completed
        assert sweeps.update_campaign_status(session, cid) == "completed"


def test_delivered_and_read_count_a_contact_once_when_message_1_is_sent_again(
    client: TestClient, settings: Settings
) -> None:
    cid, sent = _replied_and_sent_message_2(settings, 1)
    (first,) = sent
    for status in ("delivered", "read"):
        ok(
            post_meta(
                client, statuses_body(status_entry(first.provider_message_id, status, first.phone))
            )
        )
    m2 = message_2_of(settings, first.recipient_id)
    ok(post_meta(client, failed_status(m2, UNDELIVERABLE)))  # the recipient fails: retry it
    assert client.post(f"/api/campaigns/{cid}/retry-failed").json()["retried"] == 1
    run_dispatch(settings, FakeProvider())
    second = next(s for s in sent_messages(settings, cid) if s.message_id != first.message_id)

    for status in ("delivered", "read"):
        ok(
            post_meta(
                client,
                statuses_body(status_entry(second.provider_message_id, status, second.phone)),
            )
        )

    s = stats(client, cid)
    assert (s["message_1_sent"], s["delivered"], s["read"]) == (1, 1, 1)
    assert_counters_match_rows(settings, cid)


def test_a_late_failure_of_a_replaced_message_1_leaves_its_recipient_alone(
    client: TestClient, settings: Settings
) -> None:
    """retry-failed replaced the first Message 1; a late ``failed`` about it is about an
    attempt that is over, not about the contact's new one."""
    cid, sent = _replied_and_sent_message_2(settings, 1)
    (first,) = sent
    ok(post_meta(client, failed_status(message_2_of(settings, first.recipient_id), UNDELIVERABLE)))
    assert client.post(f"/api/campaigns/{cid}/retry-failed").json()["retried"] == 1
    run_dispatch(settings, FakeProvider())
    assert recipient_state(settings, first.recipient_id) == "awaiting_reply"

    ok(post_meta(client, failed_status(first, LIMITED)))

    assert message_row(settings, first.message_id).status == "failed"
    assert recipient_state(settings, first.recipient_id) == "awaiting_reply"
    assert stats(client, cid)["limited"] == 0
    assert_counters_match_rows(settings, cid)


def test_unknown_outcomes_are_sent_again_by_default_where_status_webhooks_always_come(
    settings: Settings,
) -> None:
    """UNKNOWN_OUTCOME_POLICY unset: ``resend`` with meta (and the simulator), ``fail`` with
    Wassenger and Twilio; an explicit setting wins."""
    assert settings.unknown_outcome_policy is None and settings.outcome_policy == "resend"
    cid, _ = launch(settings, 2)
    claimed = claim(settings, 2)  # the worker dies before sending
    assert len(claimed) == 2
    late = settings.model_copy(update={"sending_grace_seconds": 0})
    with session_scope(late) as session:
        assert sweeps.recover_interrupted(session, late) == {"failed": 0, "requeued": 2}
    for provider, policy in (("wassenger", "fail"), ("twilio", "fail"), ("simulator", "resend")):
        assert settings.model_copy(update={"provider": provider}).outcome_policy == policy
    explicit = late.model_copy(update={"unknown_outcome_policy": "fail"})
    claim(explicit, 2)
    with session_scope(explicit) as session:
        assert sweeps.recover_interrupted(session, explicit) == {"failed": 2, "requeued": 0}
    with session_scope(settings) as session:
        failed = session.scalars(
            select(Recipient.last_error_code).where(Recipient.campaign_id == cid)
        )
        assert set(failed) == {"outcome_unknown"}


def test_retry_limited_is_409_for_a_draft_404_for_no_campaign_and_422_for_a_bad_id(
    client: TestClient, settings: Settings
) -> None:
    with session_scope(settings) as session:
        cid = make_campaign(session, [seed_contacts(session, 1)])

    draft = client.post(f"/api/campaigns/{cid}/retry-limited")

    assert draft.status_code == 409 and "draft" in draft.json()["detail"]
    assert client.post("/api/campaigns/999999/retry-limited").status_code == 404
    assert client.post("/api/campaigns/0/retry-limited").status_code == 422


def test_a_twilio_status_about_a_message_left_sending_is_matched_by_the_id_in_its_url(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker died after Twilio accepted the message, before storing its SID: the status
    callback URL (``?m=<our id>``, signed by Twilio with the rest) still finds the message."""
    monkeypatch.setenv("PUBLIC_URL", str(client.base_url))  # what Twilio signs: the public URL
    cfg = use_provider(monkeypatch, "twilio")
    launch(cfg, 2)
    (claimed,) = claim(cfg, limit=1)  # pending -> sending, committed; the SID never stored
    sid = f"SM{uuid.uuid4().hex}"
    form = _twilio_form(
        "status_callback_delivered.txt", MessageSid=sid, SmsSid=sid, To=f"whatsapp:{claimed.to}"
    )
    webhook = f"{client.base_url}/webhooks/twilio"
    url = callback_url_for(webhook, claimed.message_id)  # as TwilioProvider sets it
    token = PROVIDER_ENV["twilio"]["TWILIO_AUTH_TOKEN"]
    headers = {"Content-Type": "application/x-www-form-urlencoded"}

    def post(path: str, signed_url: str) -> int:
        signature = twilio_signature(token, signed_url, form.items())
        response = client.post(
            path, content=urlencode(form), headers={**headers, "X-Twilio-Signature": signature}
        )
        return int(response.status_code)

    other = claimed.message_id + 1
    assert post(f"/webhooks/twilio?m={other}", url) == 403  # our id is under the signature
    assert post("/webhooks/twilio", url) == 403
    assert message_row(cfg, claimed.message_id).status == "sending"

    assert post(f"/webhooks/twilio?m={claimed.message_id}", url) == 200

    row = message_row(cfg, claimed.message_id)
    assert (row.status, row.provider_message_id) == ("delivered", sid)
    assert recipient_state(cfg, row.recipient_id) == "awaiting_reply"
