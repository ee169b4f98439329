"""Screening webhook events: what the database can hold, and what cannot be applied (pure)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relance.providers import meta_webhooks, twilio_webhooks, wassenger_webhooks
from relance.providers.events import InteractionEvent, ProviderEvent, StatusEvent
from relance.providers.screening import (
    MAX_ID_LENGTH,
    MAX_KEY_LENGTH,
    clean_json,
    clean_text,
    screen,
    stored_key,
)

FIXTURES = Path(__file__).parents[1] / "fixtures"
NOW = datetime(2025, 1, 1, tzinfo=UTC)
# Any text a JSON body or a form can carry: NUL, other controls, lone surrogates included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=400)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)
PROPS = settings(max_examples=300, deadline=None)
PLAIN_ID = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=80)


def _storable(value: str) -> bool:
    """What PostgreSQL accepts in text: no NUL, valid UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


def _status(wamid: str) -> StatusEvent:
    return StatusEvent(f"meta:status:{wamid}:read", wamid, "read", NOW, raw={"id": wamid})


def _reply(wamid: str, text: str = "oui", context: str | None = None) -> InteractionEvent:
    return InteractionEvent(f"meta:message:{wamid}", "+33612345678", "text", text, NOW, context)


@PROPS
@given(ANY_TEXT)
def test_a_stored_key_is_bounded_storable_and_plain_keys_stay_readable(key: str) -> None:
    stored = stored_key(key)

    assert len(stored) <= MAX_KEY_LENGTH and _storable(stored)
    assert stored_key(key) == stored  # the same odd event posted again is a duplicate
    plain = not re.search("[\x00-\x1f\x7f-\x9f\ud800-\udfff]", key)
    if plain and len(key) <= MAX_KEY_LENGTH:
        assert stored == key
    else:
        assert re.fullmatch(".{0,20}:sha256:[0-9a-f]{64}", stored, re.DOTALL)


@PROPS
@given(ANY_TEXT, ANY_TEXT)
def test_two_different_odd_keys_stay_apart(first: str, second: str) -> None:
    odd = "x" * MAX_KEY_LENGTH
    if first != second:
        assert stored_key(odd + first) != stored_key(odd + second)


@PROPS
@given(JSON_VALUES)
def test_a_cleaned_payload_is_storable_json_and_cleaning_is_idempotent(value: Any) -> None:
    cleaned = clean_json(value)

    dumped = json.dumps(cleaned, allow_nan=False)  # JSONB refuses NaN and Infinity too
    assert "\\u0000" not in dumped
    assert _storable(json.dumps(cleaned, allow_nan=False, ensure_ascii=False))
    assert clean_json(cleaned) == cleaned


@PROPS
@given(ANY_TEXT)
def test_clean_text_only_drops_nul_and_replaces_lone_surrogates(text: str) -> None:
    cleaned = clean_text(text)

    assert _storable(cleaned)
    if _storable(text):
        assert cleaned == text


@PROPS
@given(PLAIN_ID, ANY_TEXT)
def test_a_real_sized_plain_id_is_applied_with_its_text_cleaned(wamid: str, text: str) -> None:
    status, reply = screen(_status(wamid)), screen(_reply(wamid, text, context=wamid))

    assert (status.rejected, reply.rejected) == (None, None)
    assert status.dedup_key == f"meta:status:{wamid}:read"
    assert isinstance(reply, InteractionEvent) and reply.text == clean_text(text)


@PROPS
@given(PLAIN_ID, st.sampled_from(["\x00", "\n", "\x7f", "\ud800"]), st.booleans())
def test_an_id_with_a_control_character_is_rejected(wamid: str, odd: str, in_reply: bool) -> None:
    bad = wamid[:1] + odd + wamid[1:]
    event: ProviderEvent = _reply(bad) if in_reply else _status(bad)

    screened = screen(event)

    assert screened.rejected is not None and "control character" in screened.rejected
    assert _storable(screened.dedup_key) and "sha256" in screened.dedup_key
    assert _storable(json.dumps(screened.raw, ensure_ascii=False))


def test_ids_longer_than_any_providers_are_rejected() -> None:
    long_id = "A" * 100_000

    assert "longer than 200" in (screen(_status(long_id)).rejected or "")
    assert "event id longer" in (screen(_reply(long_id)).rejected or "")
    assert "quoted message id" in (screen(_reply("wamid.1", context=long_id)).rejected or "")
    assert screen(_status("A" * MAX_ID_LENGTH)).rejected is None
    far = InteractionEvent("meta:message:x", "+" + "3" * 40, "text", "oui", NOW)
    assert "E.164" in (screen(far).rejected or "")


def test_every_recorded_provider_event_passes_unchanged() -> None:
    events: list[ProviderEvent] = []
    for path in sorted((FIXTURES / "meta").glob("webhook_*.json")):
        events += meta_webhooks.parse(path.read_bytes())
    for path in sorted((FIXTURES / "wassenger").glob("webhook_*.json")):
        events += wassenger_webhooks.parse_wassenger(path.read_bytes())
    for path in sorted((FIXTURES / "twilio").glob("*.txt")):
        events += twilio_webhooks.parse_twilio(path.read_bytes().strip())
    assert len(events) >= 15

    for event in events:
        screened = screen(event)
        assert screened.rejected is None, event
        assert screened.dedup_key == event.dedup_key
        assert screened.raw == event.raw
