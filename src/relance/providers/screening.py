"""What of a provider event the database can hold, and whether the event can be applied.

A provider signs what it posts, yet one odd event must not fail its whole batch: the provider
would post that batch again for ever, holding back the genuine events in it. PostgreSQL refuses
a NUL in text and ``\\u0000`` in JSONB, no database encodes a lone surrogate, and an id of
100,000 characters is no provider's. So every stored text loses its NULs, every dedup key is
bounded, and an event whose ids cannot be real is stored as rejected, with why, not applied.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from typing import Any

from relance.providers.events import (
    InteractionEvent,
    NoticeEvent,
    ProviderEvent,
    SenderEvent,
    StatusEvent,
    TemplateEvent,
)

MAX_ID_LENGTH = 200  # messages.provider_message_id; a wamid is about 60 characters
MAX_KEY_LENGTH = 300  # inbound_events.dedup_key
MAX_E164_DIGITS = 15
MAX_ERROR_CODE_LENGTH = 50  # messages.error_code
MAX_ERROR_TEXT_LENGTH = 1000
MAX_LABEL_LENGTH = 200  # a subtype, payload, template name, language, status (stored in outcomes)
# Unicode category Cc (NUL, other C0 and C1 controls) and lone surrogates (Cs).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """The text without NUL, a lone surrogate (not encodable as UTF-8) replaced by U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        value = _SURROGATE.sub("\ufffd", value)
    return value


def clean_json(value: Any) -> Any:
    """A JSON value both databases store: strings (keys too) cleaned, numbers finite."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN and Infinity parse from JSON, but JSONB refuses them
    return value


def stored_key(key: str) -> str:
    """The dedup key as stored: itself when short and plain, else ``<provider>:sha256:<hex>``.

    The digest is of the whole key, so two different odd keys stay apart and the same odd
    event posted again is still a duplicate.
    """
    if len(key) <= MAX_KEY_LENGTH and not _CONTROL.search(key):
        return key
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    prefix = clean_text(key.partition(":")[0])[:20]
    return f"{prefix}:sha256:{digest}"


def _id_problem(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    if len(value) > MAX_ID_LENGTH:
        return f"{name} longer than {MAX_ID_LENGTH} characters ({len(value)})"
    if _CONTROL.search(value):
        return f"{name} holds a control character"
    return None


def rejection(event: ProviderEvent) -> str | None:
    """Why this event cannot be applied, or None: ids no provider would send."""
    problem: str | None = None
    if isinstance(event, StatusEvent):
        problem = _id_problem(event.provider_message_id, "message id")
    elif isinstance(event, TemplateEvent):
        problem = _id_problem(event.template_id, "template id")
    elif isinstance(event, NoticeEvent | SenderEvent):
        pass  # their key is checked below
    elif len(event.from_phone) > MAX_E164_DIGITS + 1:
        problem = f"sender is not an E.164 number (more than {MAX_E164_DIGITS} digits)"
    else:
        problem = _id_problem(event.context_provider_message_id, "quoted message id")
    key = event.dedup_key  # it holds the event's own id (an inbound message's, for one)
    if problem is None and len(key) > MAX_KEY_LENGTH:
        problem = f"event id longer than any provider's ({len(key)} characters)"
    if problem is None and _CONTROL.search(key):
        problem = "event id holds a control character"
    return problem


def screen(event: ProviderEvent) -> ProviderEvent:
    """The event as stored: bounded key, NUL-free texts and payload, ``rejected`` if it must be."""
    common: dict[str, Any] = {
        "dedup_key": stored_key(event.dedup_key),
        "raw": clean_json(event.raw),
        "rejected": event.rejected or rejection(event),
    }
    if isinstance(event, StatusEvent):
        code, text = event.error_code, event.error_text
        return dataclasses.replace(
            event,
            error_code=None if code is None else clean_text(code)[:MAX_ERROR_CODE_LENGTH],
            error_text=None if text is None else clean_text(text)[:MAX_ERROR_TEXT_LENGTH],
            **common,
        )
    common.update((name, clean_text(getattr(event, name))) for name in _TEXTS[type(event)])
    common.update((name, _label(getattr(event, name))) for name in _LABELS[type(event)])
    return dataclasses.replace(event, **common)


# The texts of each other event type as stored: free texts cleaned, short labels also bounded.
_TEXTS: dict[type, tuple[str, ...]] = {
    InteractionEvent: ("text", "payload"),
    TemplateEvent: ("reason",),
    NoticeEvent: (),
    SenderEvent: ("detail",),
}
_LABELS: dict[type, tuple[str, ...]] = {
    InteractionEvent: ("subtype",),
    TemplateEvent: ("name", "language", "value", "previous"),
    NoticeEvent: ("kind", "detail"),
    SenderEvent: ("event", "display_phone_number", "current_limit"),
}


def _label(value: str) -> str:
    """A short text that lands in a stored outcome: plain and bounded."""
    return _CONTROL.sub("", value)[:MAX_LABEL_LENGTH]
