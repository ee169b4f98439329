"""Wassenger webhooks: the shared secret, and the parse of message and ack events.

Wassenger webhooks carry no signature relance can count on, so relance registers its webhook URL
with a shared secret (``WASSENGER_WEBHOOK_SECRET``): as ``?secret=...`` in the URL, as an
``X-Webhook-Secret`` header, or as the key of an ``X-Wassenger-Signature: sha256=<hex>`` HMAC of
the raw body. Any one of them, when it matches, authenticates the webhook.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from relance.config import Settings
from relance.providers.base import WebhookRejected, e164, json_body
from relance.providers.events import (
    REPORTED_STATUSES,
    InteractionEvent,
    InteractionKind,
    ReportedStatus,
    StatusEvent,
)

SECRET_QUERY_PARAM = "secret"
SECRET_HEADER = "x-webhook-secret"
SIGNATURE_HEADER = "x-wassenger-signature"

# Wassenger reports the WhatsApp ack of an outbound message as a word; "server" and "device"
# are the older WhatsApp Web names for one and two ticks, "played" is a read voice note.
ACK_STATUS: dict[str, ReportedStatus] = {
    **REPORTED_STATUSES,
    "server": "sent",
    "device": "delivered",
    "played": "read",
    "error": "failed",
}
# Wassenger's guides subscribe either to ``message:out:ack`` (the ack word in ``data.ack``) or to
# one event per step; both arrive, so both are read.
EVENT_STATUS: dict[str, ReportedStatus] = {
    "message:out:sent": "sent",
    "message:out:delivered": "delivered",
    "message:out:read": "read",
}
STATUS_EVENTS = frozenset({"message:out:ack", "message:update", *EVENT_STATUS})
INBOUND_KINDS: dict[str, InteractionKind] = {
    "text": "text",
    "buttons_response": "button",
    "list_response": "interactive",
}


def verify_wassenger(settings: Settings, headers: Mapping[str, str], body: bytes, url: str) -> None:
    """Accept the webhook only if it presents WASSENGER_WEBHOOK_SECRET; else WebhookRejected."""
    secret = settings.wassenger_webhook_secret
    if not secret:
        raise WebhookRejected(
            403, "WASSENGER_WEBHOOK_SECRET must be set to accept Wassenger webhooks"
        )
    in_query = parse_qs(urlsplit(url).query).get(SECRET_QUERY_PARAM, [])
    in_header = _header(headers, SECRET_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if not in_query and in_header is None and signature is None:
        raise WebhookRejected(
            401,
            "missing Wassenger webhook secret: register the webhook URL with ?secret=... "
            "or an X-Webhook-Secret header",
        )
    expected = secret.encode()
    if any(hmac.compare_digest(value.encode(), expected) for value in in_query):
        return
    if in_header is not None and hmac.compare_digest(in_header.encode(), expected):
        return
    if signature is not None:
        digest = hmac.new(expected, body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(signature.strip().removeprefix("sha256=").encode(), digest.encode()):
            return
    raise WebhookRejected(403, "wrong Wassenger webhook secret")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


def parse_wassenger(body: bytes) -> list[StatusEvent | InteractionEvent]:
    """Turn one Wassenger webhook into events; events relance does not use give []."""
    payload = json_body(body)
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise WebhookRejected(400, "event: missing or not a string")
    if event == "message:in:new":
        return _inbound(payload, _data(payload))
    if event == "message:reaction":
        return _reaction(payload, _data(payload))
    if event in STATUS_EVENTS:
        return _status(payload, _data(payload), failed=False)
    if event == "message:out:failed":
        return _status(payload, _data(payload), failed=True)
    return []


def _data(payload: Mapping[str, Any]) -> dict[str, Any]:
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected(400, "data: missing or not an object")
    nested = data.get("message")
    if "id" not in data and isinstance(nested, dict):
        # Some of Wassenger's examples wrap the message as ``data.message`` with ``from`` and
        # ``fromMe`` in place of ``fromNumber`` and ``flow``: read it as the flat shape.
        flat = {**nested, "chat": data.get("chat", nested.get("chat"))}
        flat.setdefault("fromNumber", _phone_of(nested.get("from")))
        if "flow" not in flat and isinstance(nested.get("fromMe"), bool):
            flat["flow"] = "outbound" if nested["fromMe"] else "inbound"
        return flat
    return data


def _phone_of(address: object) -> str | None:
    """``33612345678@c.us`` or ``33612345678`` -> ``+33612345678``; anything else None."""
    if not isinstance(address, str) or not address:
        return None
    number = address.split("@", 1)[0]
    return number if number.startswith("+") else f"+{number}"


def _required_str(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value:
        raise WebhookRejected(400, f"data.{name}: missing or not a string")
    return value


def _inbound(payload: dict[str, Any], data: dict[str, Any]) -> list[StatusEvent | InteractionEvent]:
    if data.get("flow") == "outbound" or _is_group(data):
        # Our own messages echoed back, and group chatter, are not a contact's answer.
        return []
    message_id = _required_str(data, "id")
    from_phone = e164(_required_str(data, "fromNumber"))
    kind = INBOUND_KINDS.get(str(data.get("type") or "text"), "other")
    body = data.get("body")
    return [
        InteractionEvent(
            dedup_key=f"wassenger:in:{message_id}",
            from_phone=from_phone,
            kind=kind,
            text=body if isinstance(body, str) else "",
            timestamp=_timestamp(payload, data),
            context_provider_message_id=_quoted_id(data),
            raw=payload,
        )
    ]


def _reaction(
    payload: dict[str, Any], data: dict[str, Any]
) -> list[StatusEvent | InteractionEvent]:
    message_id = _required_str(data, "id")
    from_phone = e164(_required_str(data, "fromNumber"))
    reaction = data.get("reaction")
    emoji: object = reaction
    target: object = data.get("messageId")
    if isinstance(reaction, dict):
        emoji = reaction.get("emoji") or reaction.get("text") or reaction.get("reaction")
        target = target or reaction.get("messageId") or reaction.get("msgId")
    emoji = emoji if isinstance(emoji, str) else data.get("body")
    if not isinstance(emoji, str) or not emoji:
        # An empty reaction is a reaction being taken back: nothing new to record.
        return []
    return [
        InteractionEvent(
            dedup_key=f"wassenger:reaction:{message_id}:{emoji}",
            from_phone=from_phone,
            kind="reaction",
            text=emoji,
            timestamp=_timestamp(payload, data),
            context_provider_message_id=target if isinstance(target, str) else _quoted_id(data),
            raw=payload,
        )
    ]


def _status(
    payload: dict[str, Any], data: dict[str, Any], *, failed: bool
) -> list[StatusEvent | InteractionEvent]:
    if data.get("flow") == "inbound":
        return []  # acks of messages the contact sent us: not about our sends
    message_id = _required_str(data, "id")
    if failed:
        status: ReportedStatus | None = "failed"
    elif payload.get("event") in EVENT_STATUS:
        status = EVENT_STATUS[str(payload["event"])]
    else:
        status = ACK_STATUS.get(str(data.get("ack") or "").lower())
    if status is None:
        return []  # "pending" and unknown acks say nothing new
    error_code, error_text = _error(data) if status == "failed" else (None, None)
    return [
        StatusEvent(
            dedup_key=f"wassenger:{message_id}:{status}",
            provider_message_id=message_id,
            status=status,
            timestamp=_timestamp(payload, data),
            error_code=error_code,
            error_text=error_text,
            raw=payload,
        )
    ]


def _error(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    error = data.get("error") or data.get("failureReason")
    code = data.get("errorCode")
    if isinstance(error, dict):
        code = code or error.get("code")
        error = error.get("message") or error.get("description")
    return (str(code) if code else None, str(error) if error else "failed")


def _is_group(data: Mapping[str, Any]) -> bool:
    meta = data.get("meta")
    chat = data.get("chat")
    return bool(
        (isinstance(meta, dict) and meta.get("isGroup"))
        or (isinstance(chat, dict) and chat.get("type") == "group")
    )


def _quoted_id(data: Mapping[str, Any]) -> str | None:
    for name in ("quoted", "quote"):
        quoted = data.get(name)
        if isinstance(quoted, dict) and isinstance(quoted.get("id"), str):
            return str(quoted["id"])
    return None


def _timestamp(payload: Mapping[str, Any], data: Mapping[str, Any]) -> datetime:
    for value in (
        data.get("timestamp"),
        data.get("date"),
        payload.get("created"),
        payload.get("createdAt"),
    ):
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            # Unix seconds; a few integrations send milliseconds.
            seconds = value / 1000 if value > 10**11 else value
            return datetime.fromtimestamp(seconds, UTC)
        if isinstance(value, str) and value:
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return datetime.now(UTC)
