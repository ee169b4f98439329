"""Cloud API webhooks: parsing recorded payloads, X-Hub-Signature-256, the hub.challenge handshake.

The fixtures in tests/fixtures/meta follow Meta's webhook reference (README.webhooks.md). They all
concern one message: wamid ``WAMID``, sent by us as message 42 to +33612345678.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from relance.providers.base import WebhookRejected
from relance.providers.events import InteractionEvent, NoticeEvent, ProviderEvent, StatusEvent
from relance.providers.meta_webhooks import (
    parse,
    sign,
    status_payload,
    verify_handshake,
    verify_signature,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "meta"
WAMID = "wamid.HBgLMzM2MTIzNDU2NzgVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA"
PHONE = "+33612345678"
SECRET = "app-secret-for-tests"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def value_of(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["entry"][0]["changes"][0]["value"]  # type: ignore[no-any-return]


def only(events: list[ProviderEvent]) -> ProviderEvent:
    assert len(events) == 1, events
    return events[0]


def rejected(body: bytes) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        parse(body)
    return info.value


# Parsing statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "timestamp"),
    [
        ("webhook_status_sent.json", "sent", 1765642501),
        ("webhook_status_delivered.json", "delivered", 1765642503),
        ("webhook_status_read.json", "read", 1765642590),
        ("webhook_status_failed_131026.json", "failed", 1765642504),
    ],
)
def test_status_fixtures_parse(name: str, status: str, timestamp: int) -> None:
    event = only(parse((FIXTURES / name).read_bytes()))

    assert isinstance(event, StatusEvent)
    assert event.status == status
    assert event.provider_message_id == WAMID
    assert event.our_message_id == 42  # biz_opaque_callback_data, echoed back
    assert event.timestamp == datetime.fromtimestamp(timestamp, UTC)
    assert event.dedup_key == f"meta:status:{WAMID}:{status}"
    assert event.raw["recipient_id"] == "33612345678"


def test_failed_status_carries_the_error_code_title_and_details() -> None:
    event = only(parse((FIXTURES / "webhook_status_failed_131026.json").read_bytes()))

    assert isinstance(event, StatusEvent)
    assert event.error_code == "131026"
    assert event.error_text == (
        "Message undeliverable | Unable to deliver message. The recipient phone number is not a "
        "WhatsApp phone number, or the recipient has not accepted WhatsApp's new Terms of "
        "Service."
    )


def test_successful_statuses_carry_no_error() -> None:
    for name in ("webhook_status_sent.json", "webhook_status_delivered.json"):
        event = only(parse((FIXTURES / name).read_bytes()))
        assert isinstance(event, StatusEvent)
        assert (event.error_code, event.error_text) == (None, None)


def test_each_status_of_a_message_has_its_own_dedup_key_and_a_resend_the_same() -> None:
    keys = [
        only(parse((FIXTURES / f"webhook_status_{s}.json").read_bytes())).dedup_key
        for s in ("sent", "delivered", "read", "failed_131026")
    ]
    assert len(set(keys)) == 4
    again = only(parse((FIXTURES / "webhook_status_read.json").read_bytes()))
    assert again.dedup_key == keys[2]


def test_statuses_we_do_not_track_are_notices_stored_once() -> None:
    payload = load("webhook_status_read.json")
    value_of(payload)["statuses"][0]["status"] = "played"

    event = only(parse(body_of(payload)))

    assert isinstance(event, NoticeEvent)
    assert (event.kind, event.detail) == ("status", "played")
    assert event.dedup_key == f"meta:status:{WAMID}:played"


@pytest.mark.parametrize("opaque", ["campaign-7", "", "²", "9" * 40, None])
def test_opaque_data_that_is_not_one_of_our_ids_is_ignored(opaque: str | None) -> None:
    payload = load("webhook_status_delivered.json")
    value_of(payload)["statuses"][0]["biz_opaque_callback_data"] = opaque

    event = only(parse(body_of(payload)))

    assert isinstance(event, StatusEvent)
    assert event.our_message_id is None
    assert event.provider_message_id == WAMID


def test_a_batch_of_100_statuses_gives_100_events_in_order() -> None:
    single = value_of(load("webhook_status_delivered.json"))["statuses"][0]
    statuses = [
        {**single, "id": f"wamid.B{i:03d}", "biz_opaque_callback_data": str(i)} for i in range(100)
    ]

    events = parse(body_of(status_payload(statuses)))

    assert [e.provider_message_id for e in events if isinstance(e, StatusEvent)] == [
        f"wamid.B{i:03d}" for i in range(100)
    ]
    assert [e.our_message_id for e in events if isinstance(e, StatusEvent)] == list(range(100))


def test_several_entries_and_changes_are_all_read() -> None:
    status = load("webhook_status_sent.json")
    reply = load("webhook_text_reply.json")
    status["entry"].append(copy.deepcopy(reply["entry"][0]))
    status["entry"][0]["changes"].append(copy.deepcopy(reply["entry"][0]["changes"][0]))

    kinds = [type(e).__name__ for e in parse(body_of(status))]

    assert kinds == ["StatusEvent", "InteractionEvent", "InteractionEvent"]


# Parsing inbound messages -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "text"),
    [
        ("webhook_text_reply.json", "text", "Oui, je suis intéressée"),
        ("webhook_button_reply.json", "button", "Ça m'intéresse"),
        ("webhook_interactive_reply.json", "interactive", "Oui"),
        ("webhook_reaction.json", "reaction", "👍"),
    ],
)
def test_inbound_fixtures_parse(name: str, kind: str, text: str) -> None:
    payload = load(name)
    event = only(parse((FIXTURES / name).read_bytes()))

    assert isinstance(event, InteractionEvent)
    assert event.kind == kind
    assert event.text == text
    assert event.from_phone == PHONE  # wa_id "33612345678" -> E.164
    # A reply quotes our message in context.id; a reaction names it in reaction.message_id.
    assert event.context_provider_message_id == WAMID
    wamid = value_of(payload)["messages"][0]["id"]
    assert event.dedup_key == f"meta:message:{wamid}"


def test_a_reply_without_context_has_no_context_id() -> None:
    payload = load("webhook_text_reply.json")
    del value_of(payload)["messages"][0]["context"]

    event = only(parse(body_of(payload)))

    assert isinstance(event, InteractionEvent)
    assert event.context_provider_message_id is None


def test_a_list_reply_reads_its_title() -> None:
    payload = load("webhook_interactive_reply.json")
    value_of(payload)["messages"][0]["interactive"] = {
        "type": "list_reply",
        "list_reply": {"id": "slot-10h", "title": "10 h", "description": "mardi"},
    }

    event = only(parse(body_of(payload)))

    assert isinstance(event, InteractionEvent)
    assert (event.kind, event.text) == ("interactive", "10 h")


def test_a_message_of_a_type_we_do_not_know_is_kind_unknown_named_in_subtype() -> None:
    payload = load("webhook_text_reply.json")
    message = value_of(payload)["messages"][0]
    del message["text"]
    message["type"] = "hologram"
    message["hologram"] = {"id": "1234"}

    event = only(parse(body_of(payload)))

    assert isinstance(event, InteractionEvent)
    assert (event.kind, event.subtype, event.text) == ("unknown", "hologram", "")


# Signature --------------------------------------------------------------------------------------


def _reference_signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_sign_is_hmac_sha256_of_the_raw_body_in_metas_header_format() -> None:
    body = (FIXTURES / "webhook_status_sent.json").read_bytes()

    assert sign(body, SECRET) == _reference_signature(body, SECRET)


def test_a_valid_signature_is_accepted() -> None:
    body = (FIXTURES / "webhook_status_sent.json").read_bytes()

    verify_signature({"X-Hub-Signature-256": _reference_signature(body, SECRET)}, body, SECRET)
    verify_signature({"x-hub-signature-256": _reference_signature(body, SECRET)}, body, SECRET)


def _refusal(headers: dict[str, str], body: bytes, secret: str = SECRET) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        verify_signature(headers, body, secret)
    return info.value


def test_a_missing_signature_is_401() -> None:
    body = (FIXTURES / "webhook_status_sent.json").read_bytes()

    refusal = _refusal({}, body)

    assert refusal.status_code == 401
    assert "X-Hub-Signature-256" in refusal.detail


@pytest.mark.parametrize(
    "signature",
    [
        "sha256=" + "0" * 64,
        "sha256=",
        "garbage",
        _reference_signature(b"another body", SECRET),
    ],
)
def test_a_wrong_signature_is_403(signature: str) -> None:
    body = (FIXTURES / "webhook_status_sent.json").read_bytes()

    assert _refusal({"X-Hub-Signature-256": signature}, body).status_code == 403


def test_a_signature_made_with_another_secret_is_403() -> None:
    body = (FIXTURES / "webhook_status_sent.json").read_bytes()
    signature = _reference_signature(body, "someone-else")

    assert _refusal({"X-Hub-Signature-256": signature}, body).status_code == 403


def test_a_body_changed_by_one_byte_is_403() -> None:
    body = (FIXTURES / "webhook_status_read.json").read_bytes()
    signature = _reference_signature(body, SECRET)
    at = body.index(b'"read"') + 1
    tampered = body[:at] + b"R" + body[at + 1 :]
    assert len(tampered) == len(body) and tampered != body

    assert _refusal({"X-Hub-Signature-256": signature}, tampered).status_code == 403


def test_without_an_app_secret_nothing_can_be_verified() -> None:
    body = b"{}"

    refusal = _refusal({"X-Hub-Signature-256": _reference_signature(body, "")}, body, secret="")

    assert refusal.status_code == 403
    assert "META_APP_SECRET" in refusal.detail


# Handshake --------------------------------------------------------------------------------------


def _handshake(params: dict[str, str], token: str = "verify-me") -> WebhookRejected:
    with pytest.raises(WebhookRejected) as info:
        verify_handshake(params, token)
    return info.value


def test_the_right_token_echoes_the_challenge() -> None:
    params = {
        "hub.mode": "subscribe",
        "hub.verify_token": "verify-me",
        "hub.challenge": "1158201444",
    }

    assert verify_handshake(params, "verify-me") == "1158201444"


def test_a_wrong_token_is_403() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "1"}

    refusal = _handshake(params)

    assert refusal.status_code == 403
    assert "hub.verify_token" in refusal.detail


def test_no_configured_token_refuses_even_an_empty_one() -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}

    assert _handshake(params, token="").status_code == 403


@pytest.mark.parametrize("mode", [None, "unsubscribe"])
def test_a_missing_or_wrong_mode_is_400(mode: str | None) -> None:
    params = {"hub.verify_token": "verify-me", "hub.challenge": "1"}
    if mode is not None:
        params["hub.mode"] = mode

    refusal = _handshake(params)

    assert refusal.status_code == 400
    assert "hub.mode" in refusal.detail


def test_a_missing_challenge_is_400() -> None:
    refusal = _handshake({"hub.mode": "subscribe", "hub.verify_token": "verify-me"})

    assert refusal.status_code == 400
    assert "hub.challenge" in refusal.detail


# Malformed bodies: 400 naming the field ---------------------------------------------------------


def _status_with(**changes: Any) -> dict[str, Any]:
    payload = load("webhook_status_failed_131026.json")
    value_of(payload)["statuses"][0].update(changes)
    return payload


def _message_with(name: str = "webhook_text_reply.json", **changes: Any) -> dict[str, Any]:
    payload = load(name)
    value_of(payload)["messages"][0].update(changes)
    return payload


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "JSON object"),
        (b'"entry"', "JSON object"),
        (b"{}", "body.entry"),
        (b'{"entry": {}}', "body.entry"),
        (b'{"entry": [{}]}', "entry[0].changes"),
        (b'{"entry": [null]}', "entry[0].changes"),
        (b'{"entry": [{"changes": {}}]}', "entry[0].changes"),
        (b'{"entry": [{"changes": [{}]}]}', "entry[0].changes[0].value"),
        (b'{"entry": [{"changes": [{"value": []}]}]}', "entry[0].changes[0].value"),
    ],
)
def test_a_malformed_envelope_is_400_naming_the_field(body: bytes, named: str) -> None:
    refusal = rejected(body)

    assert refusal.status_code == 400
    assert named in refusal.detail


STATUS_AT = "entry[0].changes[0].value.statuses"
MESSAGE_AT = "entry[0].changes[0].value.messages"


def _without(name: str, collection: str, field: str) -> dict[str, Any]:
    payload = load(name)
    del value_of(payload)[collection][0][field]
    return payload


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (_without("webhook_status_sent.json", "statuses", "id"), f"{STATUS_AT}[0].id"),
        (_without("webhook_status_sent.json", "statuses", "status"), f"{STATUS_AT}[0].status"),
        (_without("webhook_text_reply.json", "messages", "id"), f"{MESSAGE_AT}[0].id"),
        (_without("webhook_text_reply.json", "messages", "from"), f"{MESSAGE_AT}[0].from"),
    ],
)
def test_an_event_without_a_required_field_is_400_naming_it(
    payload: dict[str, Any], named: str
) -> None:
    refusal = rejected(body_of(payload))

    assert refusal.status_code == 400
    assert named in refusal.detail


def test_a_sender_that_is_not_a_phone_number_is_400() -> None:
    refusal = rejected(body_of(_message_with(**{"from": "not-a-number"})))

    assert refusal.status_code == 400
    assert "not-a-number" in refusal.detail


def _statuses_as(value: Any) -> dict[str, Any]:
    payload = load("webhook_status_sent.json")
    value_of(payload)["statuses"] = value
    return payload


def _messages_as(value: Any) -> dict[str, Any]:
    payload = load("webhook_text_reply.json")
    value_of(payload)["messages"] = value
    return payload


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (_statuses_as(5), "statuses"),
        (_statuses_as({"id": WAMID}), "statuses"),
        (_statuses_as(["sent"]), "statuses[0]"),
        (_messages_as(7), "messages"),
        (_messages_as([1]), "messages[0]"),
        (_status_with(errors={"code": 131026}), "statuses[0].errors"),
        (_status_with(errors=[131026]), "statuses[0].errors[0]"),
        (_message_with(text="hello"), "messages[0].text"),
        (_message_with(context="wamid.X"), "messages[0].context"),
        (_message_with("webhook_button_reply.json", button="Oui"), "messages[0].button"),
        (
            _message_with("webhook_interactive_reply.json", interactive="Oui"),
            "messages[0].interactive",
        ),
        (
            _message_with(
                "webhook_interactive_reply.json",
                interactive={"type": "button_reply", "button_reply": "Oui"},
            ),
            "messages[0].interactive.button_reply",
        ),
        (_message_with("webhook_reaction.json", reaction=["👍"]), "messages[0].reaction"),
    ],
)
def test_a_field_of_the_wrong_shape_is_400_naming_it(payload: dict[str, Any], named: str) -> None:
    """SPEC 6: a clear 4xx with the field named, never a 500 from inside the parser."""
    refusal = rejected(body_of(payload))

    assert refusal.status_code == 400
    assert named in refusal.detail
