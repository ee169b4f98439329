"""Every Cloud API webhook shape of tests/fixtures/meta parsed: one event each, nothing dropped.

The fixtures follow Meta's webhook reference (README.webhooks.md); they concern +33612345678 and
our message ``WAMID`` to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relance.providers.base import WebhookRejected
from relance.providers.events import (
    InteractionEvent,
    NoticeEvent,
    ProviderEvent,
    SenderEvent,
    TemplateEvent,
)
from relance.providers.meta_webhooks import parse
from relance.providers.screening import MAX_KEY_LENGTH, screen

FIXTURES = Path(__file__).parents[1] / "fixtures" / "meta"
WAMID = "wamid.HBgLMzM2MTIzNDU2NzgVAgARGBI0QUQ2MjA4NEYyRkExNjMyREUA"
PHONE = "+33612345678"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def only(name: str) -> ProviderEvent:
    events = parse((FIXTURES / name).read_bytes())
    assert len(events) == 1, events
    return events[0]


# fixture: (kind, subtype, text, payload, quotes our message)
MESSAGES: dict[str, tuple[str, str, str, str, bool]] = {
    "webhook_text_reply.json": ("text", "", "Oui, je suis intéressée", "", True),
    "webhook_button_reply.json": ("button", "", "Ça m'intéresse", "INTERESSE", True),
    "webhook_button_stop_promotions.json": (
        "button",
        "",
        "Stop promotions",
        "Stop promotions",
        True,
    ),
    "webhook_interactive_reply.json": ("interactive", "button_reply", "Oui", "oui", True),
    "webhook_interactive_list_reply.json": (
        "interactive",
        "list_reply",
        "Samedi 10 h",
        "slot-sat-10",
        True,
    ),
    "webhook_interactive_nfm_reply.json": ("interactive", "nfm_reply", "Sent", "flow", True),
    "webhook_image.json": ("image", "", "Voici mon billet", "1003383421387256", True),
    "webhook_video.json": ("video", "", "", "1086474049489154", True),
    "webhook_audio_voice.json": ("audio", "voice", "", "1203471287629011", True),
    "webhook_document.json": ("document", "", "Mon devis", "1166403241183497", True),
    "webhook_sticker.json": ("sticker", "", "", "1294217301564528", False),
    "webhook_location.json": ("location", "", "Opéra de Lyon", "", False),
    "webhook_contacts.json": ("contacts", "", "", "", False),
    "webhook_order.json": ("order", "", "Pour samedi", "1130417587854612", False),
    "webhook_reaction.json": ("reaction", "", "👍", "", True),
    "webhook_reaction_removed.json": ("reaction", "", "", "", True),
    "webhook_unsupported.json": ("unsupported", "poll_update", "", "", False),
    "webhook_system_user_changed_number.json": (
        "system",
        "user_changed_number",
        "User Ana changed from 33612345678 to 33698765432",
        "",
        False,
    ),
    "webhook_system_customer_identity_changed.json": (
        "system",
        "customer_identity_changed",
        "Ana's security code changed",
        "",
        False,
    ),
    "webhook_revoke.json": (
        "revoke",
        "",
        "",
        "wamid.HBgLMzM2MTIzNDU2NzgVAgASGBQzRUIwMDFBQTJBNEE2QUQ2NEYzOAA=",
        False,
    ),
    "webhook_edit.json": (
        "edit",
        "text",
        "",
        "wamid.HBgLMzM2MTIzNDU2NzgVAgASGBQzRUIwMDFBQTJBNEE2QUQ2NEYzOAA=",
        False,
    ),
    "webhook_user_preferences_stop.json": (
        "user_preferences",
        "marketing_messages",
        "User requested to stop marketing messages",
        "stop",
        False,
    ),
    "webhook_user_preferences_resume.json": (
        "user_preferences",
        "marketing_messages",
        "User requested to resume marketing messages",
        "resume",
        False,
    ),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_each_message_type_is_an_interaction_with_its_kind_text_and_payload(name: str) -> None:
    kind, subtype, text, payload, quotes = MESSAGES[name]

    event = only(name)

    assert isinstance(event, InteractionEvent)
    assert (event.kind, event.subtype, event.text, event.payload) == (kind, subtype, text, payload)
    assert event.from_phone == PHONE
    assert event.context_provider_message_id == (WAMID if quotes else None)
    message = load(name)["entry"][0]["changes"][0]["value"]
    if kind == "user_preferences":
        assert (
            event.dedup_key
            == f"meta:preference:33612345678:marketing_messages:{payload}:"
            + str(message["user_preferences"][0]["timestamp"])
        )
    else:
        assert event.dedup_key == f"meta:message:{message['messages'][0]['id']}"


# fixture: (signal, value, previous, reason)
TEMPLATES = {
    "webhook_message_template_status_update.json": (
        "status",
        "PAUSED",
        "",
        "FIRST_PAUSE · Your WhatsApp message template has been paused for 3 hours until Dec 13 "
        "at 7:05 PM UTC because of low quality.",
    ),
    "webhook_message_template_quality_update.json": ("quality", "YELLOW", "GREEN", ""),
    "webhook_template_category_update.json": ("category", "MARKETING", "UTILITY", ""),
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_template_signal_names_the_template_and_what_became_of_it(name: str) -> None:
    signal, value, previous, reason = TEMPLATES[name]

    event = only(name)

    assert isinstance(event, TemplateEvent)
    assert (event.signal, event.value, event.previous, event.reason) == (
        signal,
        value,
        previous,
        reason,
    )
    assert (event.template_id, event.name, event.language) == (
        "1689556908129832",
        "relance_invitation",
        "fr",
    )
    time = load(name)["entry"][0]["time"]
    assert event.dedup_key == f"meta:template:{signal}:1689556908129832:{value}:{time}"


def test_an_impending_category_change_says_what_it_will_become() -> None:
    payload = load("webhook_template_category_update.json")
    value = payload["entry"][0]["changes"][0]["value"]
    del value["previous_category"]
    value.update(correct_category="MARKETING", new_category="UTILITY", category_update_timestamp=1)

    (event,) = parse(json.dumps(payload).encode())

    assert isinstance(event, TemplateEvent)
    assert (event.value, event.previous, event.reason) == ("UTILITY", "", "to become MARKETING")


NOTICES = {
    "webhook_errors.json": ("errors", "130429 Rate limit hit"),
    "webhook_smb_message_echoes.json": ("smb_message_echoes", "text"),
    "webhook_calls.json": ("calls", "connect"),
}
SENDER_SIGNALS = {
    "webhook_account_update.json": ("account", "ACCOUNT_VIOLATION", "", "", "SCAM"),
    "webhook_account_update_restriction.json": (
        "account",
        "ACCOUNT_RESTRICTION",
        "",
        "",
        "RESTRICTED_BIZ_INITIATED_MESSAGING",
    ),
    "webhook_phone_number_quality_update.json": (
        "quality",
        "FLAGGED",
        "15550783881",
        "TIER_10K",
        "",
    ),
    "webhook_phone_number_quality_downgrade.json": (
        "quality",
        "DOWNGRADE",
        "15550783881",
        "TIER_2K",
        "TIER_10K -> TIER_2K",
    ),
}


@pytest.mark.parametrize("name", sorted(SENDER_SIGNALS))
def test_quality_and_account_updates_are_sender_signals(name: str) -> None:
    event = only(name)

    assert isinstance(event, SenderEvent)
    got = (
        event.signal,
        event.event,
        event.display_phone_number,
        event.current_limit,
        event.detail,
    )
    assert got == SENDER_SIGNALS[name]
    assert event.dedup_key == only(name).dedup_key  # Meta's retry is a duplicate


@pytest.mark.parametrize("name", sorted(NOTICES))
def test_the_other_fields_are_notices(name: str) -> None:
    event = only(name)

    assert isinstance(event, NoticeEvent)
    assert (event.kind, event.detail) == NOTICES[name]
    assert event.raw == load(name)["entry"][0]["changes"][0]["value"] or event.kind in (
        "smb_message_echoes",
        "calls",
    )


def test_notice_keys_are_the_same_for_the_same_body_and_differ_otherwise() -> None:
    """What has no id of its own is keyed by a digest: Meta's retry is a duplicate."""
    errors = load("webhook_errors.json")
    first = only("webhook_errors.json")
    errors["entry"][0]["changes"][0]["value"]["errors"][0]["code"] = 131000
    (other,) = parse(json.dumps(errors).encode())

    assert first.dedup_key == only("webhook_errors.json").dedup_key
    assert first.dedup_key.startswith("meta:errors:sha256:")
    assert other.dedup_key != first.dedup_key
    assert only("webhook_calls.json").dedup_key == (
        "meta:call:wacid.HBgLMzM2MTIzNDU2NzgVAgARGCAyODRQIAFRoA:connect"
    )
    assert only("webhook_smb_message_echoes.json").dedup_key == (
        "meta:echo:wamid.HBgLMzM2MTIzNDU2NzgVAgARGBQzRUIwTjAyMEVDSE8A"
    )


def test_an_unknown_field_is_stored_not_dropped() -> None:
    payload = load("webhook_account_update.json")
    payload["entry"][0]["changes"][0]["field"] = "smb_app_state_sync"

    (event,) = parse(json.dumps(payload).encode())

    assert isinstance(event, NoticeEvent)
    assert (event.kind, event.detail) == ("smb_app_state_sync", "smb_app_state_sync")
    assert event.dedup_key.startswith("meta:smb_app_state_sync:sha256:")


def test_a_call_status_of_the_calls_field_is_a_notice_not_a_message_status() -> None:
    payload = load("webhook_calls.json")
    value = payload["entry"][0]["changes"][0]["value"]
    value["statuses"] = [
        {
            "id": "wacid.X",
            "timestamp": "1",
            "type": "call",
            "status": "RINGING",
            "recipient_id": "3",
        }
    ]

    events = parse(json.dumps(payload).encode())

    assert [(type(e), e.dedup_key) for e in events] == [
        (NoticeEvent, "meta:call:wacid.HBgLMzM2MTIzNDU2NzgVAgARGCAyODRQIAFRoA:connect"),
        (NoticeEvent, "meta:call:wacid.X:RINGING"),
    ]


@pytest.mark.parametrize(
    ("name", "path", "bad", "where"),
    [
        ("webhook_user_preferences_stop.json", ("user_preferences",), {"a": 1}, "user_preferences"),
        ("webhook_user_preferences_stop.json", ("user_preferences", 0, "wa_id"), None, "wa_id"),
        ("webhook_smb_message_echoes.json", ("message_echoes", 0), "x", "message_echoes[0]"),
        ("webhook_system_user_changed_number.json", ("messages", 0, "system"), [1], "system"),
        ("webhook_interactive_nfm_reply.json", ("messages", 0, "interactive"), "x", "interactive"),
        ("webhook_calls.json", ("calls",), "x", "calls"),
        ("webhook_message_template_status_update.json", ("other_info",), [], "other_info"),
        ("webhook_errors.json", ("errors", 0), 7, "errors[0]"),
    ],
)
def test_a_malformed_shape_is_400_naming_where(
    name: str, path: tuple[str | int, ...], bad: Any, where: str
) -> None:
    payload = load(name)
    target: Any = payload["entry"][0]["changes"][0]["value"]
    for step in path[:-1]:
        target = target[step]
    if bad is None:
        del target[path[-1]]
    else:
        target[path[-1]] = bad

    with pytest.raises(WebhookRejected) as refused:
        parse(json.dumps(payload).encode())

    assert refused.value.status_code == 400
    assert where in refused.value.detail


ODD = st.text(st.characters(exclude_categories=()), max_size=400)


@settings(max_examples=200, deadline=None)
@given(ODD, ODD, ODD)
def test_any_text_in_a_new_event_is_screened_to_what_the_database_holds(
    field: str, name: str, detail: str
) -> None:
    """A field's name, a template's name, a subtype: NUL and lone surrogates never stored."""
    payload = load("webhook_message_template_status_update.json")
    change = payload["entry"][0]["changes"][0]
    change["value"].update(message_template_name=name, reason=detail)
    events = parse(json.dumps(payload).encode())
    change["field"] = field or "x"
    events += parse(json.dumps(payload).encode())
    system = load("webhook_system_user_changed_number.json")
    system["entry"][0]["changes"][0]["value"]["messages"][0]["system"]["type"] = name
    events += parse(json.dumps(system).encode())

    for event in map(screen, events):
        stored = json.dumps(event.__dict__, default=str, ensure_ascii=False)
        assert "\x00" not in stored
        stored.encode("utf-8")  # no lone surrogate
        assert len(event.dedup_key) <= MAX_KEY_LENGTH


def test_a_template_signal_with_an_id_no_provider_sends_is_rejected_not_applied() -> None:
    payload = load("webhook_message_template_quality_update.json")
    payload["entry"][0]["changes"][0]["value"]["message_template_id"] = "9" * 1000

    (event,) = map(screen, parse(json.dumps(payload).encode()))

    assert event.rejected == "template id longer than 200 characters (1000)"
    assert len(event.dedup_key) <= MAX_KEY_LENGTH
