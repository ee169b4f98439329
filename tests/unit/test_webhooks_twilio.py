"""Twilio webhooks: X-Twilio-Signature against Twilio's documented vector, and parsing."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest

from relance.config import Settings
from relance.providers.base import WebhookRejected
from relance.providers.events import InteractionEvent, StatusEvent
from relance.providers.twilio_webhooks import parse_twilio, twilio_signature, verify_twilio

FIXTURES = Path(__file__).parents[1] / "fixtures" / "twilio"

# Twilio's published request-validation example (twilio-php / twilio-python docs, "Validate
# Incoming Requests"): this token, URL and POST parameters give this signature.
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+14158675309",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
}
DOC_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
DOC_BODY = urlencode(DOC_PARAMS).encode()
DOC_SETTINGS = Settings(twilio_auth_token=DOC_TOKEN)

WEBHOOK_URL = "https://relance.example.com/webhooks/twilio"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def only(events: list[StatusEvent | InteractionEvent]) -> StatusEvent | InteractionEvent:
    assert len(events) == 1
    return events[0]


# Signature ----------------------------------------------------------------------------


def test_signature_matches_twilios_documented_example() -> None:
    assert twilio_signature(DOC_TOKEN, DOC_URL, DOC_PARAMS.items()) == DOC_SIGNATURE


def test_signature_does_not_depend_on_parameter_order() -> None:
    shuffled = list(reversed(DOC_PARAMS.items()))

    assert twilio_signature(DOC_TOKEN, DOC_URL, shuffled) == DOC_SIGNATURE


def test_documented_request_is_accepted() -> None:
    verify_twilio(DOC_SETTINGS, {"X-Twilio-Signature": DOC_SIGNATURE}, DOC_BODY, DOC_URL)


def test_header_name_is_case_insensitive() -> None:
    verify_twilio(DOC_SETTINGS, {"x-twilio-signature": DOC_SIGNATURE}, DOC_BODY, DOC_URL)


def test_a_real_status_callback_signed_with_our_token_is_accepted() -> None:
    settings = Settings(twilio_auth_token="our-token")
    body = raw("status_callback_delivered.txt")
    signature = twilio_signature("our-token", WEBHOOK_URL, parse_qsl(body.decode()))

    verify_twilio(settings, {"X-Twilio-Signature": signature}, body, WEBHOOK_URL)


def test_the_default_port_may_be_present_or_not() -> None:
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    signature = twilio_signature(DOC_TOKEN, with_port, DOC_PARAMS.items())

    verify_twilio(DOC_SETTINGS, {"X-Twilio-Signature": signature}, DOC_BODY, DOC_URL)
    verify_twilio(DOC_SETTINGS, {"X-Twilio-Signature": DOC_SIGNATURE}, DOC_BODY, with_port)


def test_missing_signature_is_401() -> None:
    with pytest.raises(WebhookRejected) as caught:
        verify_twilio(DOC_SETTINGS, {}, DOC_BODY, DOC_URL)

    assert caught.value.status_code == 401


@pytest.mark.parametrize(
    ("signature", "body", "url"),
    [
        ("0" + DOC_SIGNATURE[1:], DOC_BODY, DOC_URL),
        (DOC_SIGNATURE, DOC_BODY.replace(b"Digits=1234", b"Digits=9999"), DOC_URL),
        (DOC_SIGNATURE, DOC_BODY, DOC_URL.replace("foo=1", "foo=2")),
        (DOC_SIGNATURE, DOC_BODY, DOC_URL.replace("https://", "http://")),
    ],
    ids=["wrong-signature", "tampered-body", "other-url", "other-scheme"],
)
def test_wrong_signature_is_403(signature: str, body: bytes, url: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        verify_twilio(DOC_SETTINGS, {"X-Twilio-Signature": signature}, body, url)

    assert caught.value.status_code == 403


def test_another_token_is_403() -> None:
    other = Settings(twilio_auth_token="54321")

    with pytest.raises(WebhookRejected) as caught:
        verify_twilio(other, {"X-Twilio-Signature": DOC_SIGNATURE}, DOC_BODY, DOC_URL)

    assert caught.value.status_code == 403


def test_without_an_auth_token_every_webhook_is_refused() -> None:
    unconfigured = Settings(twilio_auth_token="")
    signature = twilio_signature("", DOC_URL, DOC_PARAMS.items())

    with pytest.raises(WebhookRejected) as caught:
        verify_twilio(unconfigured, {"X-Twilio-Signature": signature}, DOC_BODY, DOC_URL)

    assert caught.value.status_code == 403
    assert "TWILIO_AUTH_TOKEN" in caught.value.detail


# Parsing ------------------------------------------------------------------------------


def test_delivered_status_callback() -> None:
    event = only(parse_twilio(raw("status_callback_delivered.txt")))

    assert isinstance(event, StatusEvent)
    assert event.status == "delivered"
    assert event.provider_message_id == "SM3f1b2c4d5e6f708192a3b4c5d6e7f809"
    assert event.dedup_key == "twilio:SM3f1b2c4d5e6f708192a3b4c5d6e7f809:delivered"
    assert event.error_code is None
    assert event.raw["To"] == "whatsapp:+33612345678"


def test_failed_status_callback_carries_the_error_code() -> None:
    event = only(parse_twilio(raw("status_callback_failed.txt")))

    assert isinstance(event, StatusEvent)
    assert event.status == "failed"
    assert event.error_code == "63016"
    assert event.dedup_key == "twilio:SM9a8b7c6d5e4f30211a2b3c4d5e6f7a8b:failed"


def test_undelivered_counts_as_failed_with_its_own_dedup_key() -> None:
    body = raw("status_callback_failed.txt").replace(b"=failed", b"=undelivered")

    event = only(parse_twilio(body))

    assert isinstance(event, StatusEvent)
    assert event.status == "failed"
    assert event.dedup_key == "twilio:SM9a8b7c6d5e4f30211a2b3c4d5e6f7a8b:undelivered"


@pytest.mark.parametrize(("status", "reported"), [("sent", "sent"), ("read", "read")])
def test_sent_and_read_callbacks(status: str, reported: str) -> None:
    body = raw("status_callback_delivered.txt").replace(b"=delivered", f"={status}".encode())

    event = only(parse_twilio(body))

    assert isinstance(event, StatusEvent)
    assert event.status == reported


@pytest.mark.parametrize("status", ["queued", "accepted", "sending"])
def test_intermediate_statuses_say_nothing(status: str) -> None:
    body = raw("status_callback_delivered.txt").replace(b"=delivered", f"={status}".encode())

    assert parse_twilio(body) == []


def test_inbound_text_is_an_interaction() -> None:
    event = only(parse_twilio(raw("inbound_text.txt")))

    assert isinstance(event, InteractionEvent)
    assert event.kind == "text"
    assert event.from_phone == "+33612345678"
    assert event.text == "Oui, je suis intéressée"
    assert event.context_provider_message_id is None
    assert event.dedup_key == "twilio:in:SMb1c2d3e4f5a60718293a4b5c6d7e8f90"


def test_button_reply_points_at_the_message_it_answers() -> None:
    event = only(parse_twilio(raw("inbound_button.txt")))

    assert isinstance(event, InteractionEvent)
    assert event.kind == "button"
    assert event.text == "Oui"
    assert event.context_provider_message_id == "SM3f1b2c4d5e6f708192a3b4c5d6e7f809"
    assert event.dedup_key == "twilio:in:SMc0ffee00112233445566778899aabbcc"


def test_media_without_text_is_other() -> None:
    body = raw("inbound_text.txt").replace(b"MessageType=text", b"MessageType=image")

    event = only(parse_twilio(body))

    assert isinstance(event, InteractionEvent)
    assert event.kind == "other"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"", "MessageSid"),
        (b"MessageStatus=delivered", "MessageSid"),
        (b"MessageSid=SM1&AccountSid=AC1", "MessageStatus"),
        (b"MessageSid=SM1&SmsStatus=received", "From"),
        (b"MessageSid=SM1&SmsStatus=received&From=whatsapp%3Anone", "phone"),
        (b"MessageSid=SM1&Body=\xff\xfe", "body"),
    ],
)
def test_malformed_webhooks_are_rejected_naming_the_field(body: bytes, field: str) -> None:
    with pytest.raises(WebhookRejected) as caught:
        parse_twilio(body)

    assert caught.value.status_code == 400
    assert field in caught.value.detail


@pytest.mark.parametrize(
    ("query", "our_id"),
    [
        ("?m=42", 42),
        ("", None),
        ("?m=", None),
        ("?m=4x2", None),
        ("?m=1&m=2", None),
        ("?m=" + "9" * 19, None),
    ],
)
def test_a_status_callback_url_carries_our_message_id(query: str, our_id: int | None) -> None:
    """TwilioProvider sets StatusCallback to ``.../webhooks/twilio?m=<our id>``; anything but
    one of our ids (not a number, two values, too big for a row id) is not."""
    event = only(parse_twilio(raw("status_callback_delivered.txt"), WEBHOOK_URL + query))

    assert isinstance(event, StatusEvent)
    assert event.our_message_id == our_id
