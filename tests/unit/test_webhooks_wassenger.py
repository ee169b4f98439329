"""Wassenger webhooks: the shared-secret check and parsing of the recorded payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relance.config import Settings
from relance.providers.base import WebhookRejected
from relance.providers.events import InteractionEvent, StatusEvent
from relance.providers.wassenger_webhooks import parse_wassenger, verify_wassenger

FIXTURES = Path(__file__).parents[1] / "fixtures" / "wassenger"
SECRET = "s3cret-webhook-value"
URL = "https://relance.example.com/webhooks/wassenger"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def payload(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(raw(name))
    return loaded


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def only(events: list[StatusEvent | InteractionEvent]) -> StatusEvent | InteractionEvent:
    assert len(events) == 1
    return events[0]


SETTINGS = Settings(wassenger_webhook_secret=SECRET)


# Parsing ------------------------------------------------------------------------------


def test_inbound_text_is_an_interaction() -> None:
    event = only(parse_wassenger(raw("webhook_message_in_new.json")))

    assert isinstance(event, InteractionEvent)
    assert event.kind == "text"
    assert event.from_phone == "+33612345678"
    assert event.text == "Oui, je suis intéressée"
    assert event.timestamp == datetime(2025, 12, 13, 16, 15, tzinfo=UTC)
    assert event.context_provider_message_id == "6a0c3f1e9b2d4c5a7e8f9012"
    assert event.dedup_key == "wassenger:in:ACB19255F805BFD6139C144316DE574F"
    assert event.raw == payload("webhook_message_in_new.json")


def test_reaction_is_an_interaction_on_the_reacted_message() -> None:
    event = only(parse_wassenger(raw("webhook_message_reaction.json")))

    assert isinstance(event, InteractionEvent)
    assert event.kind == "reaction"
    assert event.text == "👍"
    assert event.from_phone == "+33612345678"
    assert event.context_provider_message_id == "6a0c3f1e9b2d4c5a7e8f9012"
    assert event.dedup_key == "wassenger:reaction:3EB0A9C21F4D7E8B6A51:👍"


def test_reaction_taken_back_records_nothing() -> None:
    body = payload("webhook_message_reaction.json")
    body["data"]["reaction"] = ""
    body["data"].pop("body", None)

    assert parse_wassenger(encode(body)) == []


def test_out_ack_read_is_a_read_status() -> None:
    event = only(parse_wassenger(raw("webhook_message_out_ack.json")))

    assert isinstance(event, StatusEvent)
    assert event.status == "read"
    assert event.provider_message_id == "6a0c3f1e9b2d4c5a7e8f9012"
    assert event.dedup_key == "wassenger:6a0c3f1e9b2d4c5a7e8f9012:read"
    assert event.timestamp == datetime(2025, 12, 13, 16, 16, tzinfo=UTC)
    assert event.error_code is None


def test_message_update_delivered_is_a_delivered_status() -> None:
    event = only(parse_wassenger(raw("webhook_message_update.json")))

    assert isinstance(event, StatusEvent)
    assert event.status == "delivered"
    assert event.dedup_key == "wassenger:6a0c3f1e9b2d4c5a7e8f9012:delivered"


def test_out_failed_is_a_failed_status_with_the_reason() -> None:
    event = only(parse_wassenger(raw("webhook_message_out_failed.json")))

    assert isinstance(event, StatusEvent)
    assert event.status == "failed"
    assert event.provider_message_id == "7b1d4e2f0c3e5d6b8f9a0123"
    assert event.error_code == "invalid_phone"
    assert event.error_text == "The phone number does not exist on WhatsApp"


@pytest.mark.parametrize(
    ("ack", "status"),
    [("server", "sent"), ("sent", "sent"), ("device", "delivered"), ("played", "read")],
)
def test_ack_words_map_onto_statuses(ack: str, status: str) -> None:
    body = payload("webhook_message_out_ack.json")
    body["data"]["ack"] = ack

    event = only(parse_wassenger(encode(body)))

    assert isinstance(event, StatusEvent)
    assert event.status == status


def test_pending_ack_says_nothing() -> None:
    body = payload("webhook_message_out_ack.json")
    body["data"]["ack"] = "pending"

    assert parse_wassenger(encode(body)) == []


def test_ack_of_an_inbound_message_is_not_about_our_sends() -> None:
    body = payload("webhook_message_update.json")
    body["data"]["flow"] = "inbound"

    assert parse_wassenger(encode(body)) == []


def test_group_messages_are_not_answers() -> None:
    body = payload("webhook_message_in_new.json")
    body["data"]["meta"]["isGroup"] = True

    assert parse_wassenger(encode(body)) == []


def test_events_relance_does_not_use_are_ignored() -> None:
    assert parse_wassenger(encode({"event": "chat:update", "data": {"id": "x"}})) == []


def test_same_delivery_twice_gives_the_same_dedup_keys() -> None:
    first = parse_wassenger(raw("webhook_message_in_new.json"))
    second = parse_wassenger(raw("webhook_message_in_new.json"))

    assert [e.dedup_key for e in first] == [e.dedup_key for e in second]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (encode({"data": {}}), "event"),
        (encode({"event": "message:in:new"}), "data"),
        (encode({"event": "message:in:new", "data": {"id": "A1"}}), "data.fromNumber"),
        (encode({"event": "message:in:new", "data": {"fromNumber": "+336"}}), "data.id"),
        (encode({"event": "message:out:ack", "data": {"ack": "read"}}), "data.id"),
        (encode({"event": "message:in:new", "data": {"id": "A1", "fromNumber": "n/a"}}), "phone"),
    ],
)
def test_malformed_payloads_are_rejected_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_wassenger(body)

    assert caught.value.status_code == 400
    assert field in caught.value.detail


# Verification -------------------------------------------------------------------------


def test_secret_in_the_query_string_is_accepted() -> None:
    verify_wassenger(SETTINGS, {}, b"{}", f"{URL}?secret={SECRET}")


def test_secret_in_a_header_is_accepted_whatever_its_case() -> None:
    verify_wassenger(SETTINGS, {"X-Webhook-Secret": SECRET}, b"{}", URL)


def test_hmac_signature_of_the_body_is_accepted() -> None:
    body = raw("webhook_message_in_new.json")
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()

    verify_wassenger(SETTINGS, {"x-wassenger-signature": signature}, body, URL)


def test_signature_of_another_body_is_refused() -> None:
    body = raw("webhook_message_in_new.json")
    signature = "sha256=" + hmac.new(SECRET.encode(), b"other", hashlib.sha256).hexdigest()

    with pytest.raises(WebhookRejected) as caught:
        verify_wassenger(SETTINGS, {"x-wassenger-signature": signature}, body, URL)

    assert caught.value.status_code == 403


def test_missing_secret_is_401() -> None:
    with pytest.raises(WebhookRejected) as caught:
        verify_wassenger(SETTINGS, {}, b"{}", URL)

    assert caught.value.status_code == 401


@pytest.mark.parametrize(
    ("headers", "url"),
    [
        ({}, f"{URL}?secret=wrong"),
        ({"x-webhook-secret": "wrong"}, URL),
        ({}, f"{URL}?secret={SECRET}x"),
    ],
)
def test_wrong_secret_is_403(headers: dict[str, str], url: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        verify_wassenger(SETTINGS, headers, b"{}", url)

    assert caught.value.status_code == 403


def test_without_a_configured_secret_every_webhook_is_refused() -> None:
    unconfigured = Settings(wassenger_webhook_secret="")

    with pytest.raises(WebhookRejected) as caught:
        verify_wassenger(unconfigured, {}, b"{}", f"{URL}?secret=")

    assert caught.value.status_code == 403
    assert "WASSENGER_WEBHOOK_SECRET" in caught.value.detail


# The one-event-per-step subscription of Wassenger's webhook guides -------------------


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("webhook_message_out_delivered.json", "delivered"),
        ("webhook_message_out_read.json", "read"),
    ],
)
def test_step_events_carry_their_status_in_the_event_name(name: str, status: str) -> None:
    event = only(parse_wassenger(raw(name)))

    assert isinstance(event, StatusEvent)
    assert event.status == status
    assert event.provider_message_id == "6a0c3f1e9b2d4c5a7e8f9012"
    assert event.dedup_key == f"wassenger:6a0c3f1e9b2d4c5a7e8f9012:{status}"


def test_step_event_and_ack_event_of_one_step_are_one_status() -> None:
    read_ack = only(parse_wassenger(raw("webhook_message_out_ack.json")))
    read_step = only(parse_wassenger(raw("webhook_message_out_read.json")))

    assert read_ack.dedup_key == read_step.dedup_key


def test_nested_inbound_message_is_read_like_the_flat_one() -> None:
    event = only(parse_wassenger(raw("webhook_message_in_new_nested.json")))

    assert isinstance(event, InteractionEvent)
    assert event.kind == "text"
    assert event.from_phone == "+33612345678"
    assert event.text == "Oui, je suis intéressée"
    assert event.timestamp == datetime(2025, 12, 13, 16, 15, tzinfo=UTC)
    assert event.dedup_key == "wassenger:in:3EB0C1D2E3F4A5B6C7D8"


def test_nested_message_sent_by_the_business_is_not_an_answer() -> None:
    body = payload("webhook_message_in_new_nested.json")
    body["data"]["message"]["fromMe"] = True

    assert parse_wassenger(encode(body)) == []
