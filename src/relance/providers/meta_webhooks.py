"""WhatsApp Cloud API webhooks: signature, verification handshake, payload parsing.

Meta signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>``.
The simulator signs its webhooks the same way, so one parser serves both. Every change of every
entry becomes events, whatever its field: statuses here, messages in ``meta_messages``, the
other fields in ``meta_fields``; nothing Meta posts is dropped unseen.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from relance.providers.base import WebhookRejected, json_body
from relance.providers.events import REPORTED_STATUSES, NoticeEvent, ProviderEvent, StatusEvent
from relance.providers.meta_account import SENDER_FIELDS, sender_event
from relance.providers.meta_errors import describe
from relance.providers.meta_fields import (
    TEMPLATE_SIGNALS,
    errors_event,
    notice_events,
    preference_events,
    template_event,
)
from relance.providers.meta_messages import message_event
from relance.providers.meta_shapes import digest_key, object_at, objects_at, text_at
from relance.providers.meta_shapes import list_at as _list
from relance.providers.meta_shapes import require as _require
from relance.providers.meta_shapes import timestamp as _timestamp

SIGNATURE_HEADER = "x-hub-signature-256"
_OUR_ID = re.compile(r"[0-9]{1,18}")  # a message id of ours fits a BIGINT


def sign(body: bytes, app_secret: str) -> str:
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(headers: Mapping[str, str], body: bytes, app_secret: str) -> None:
    """401 when unsigned, 403 when wrongly signed; constant-time comparison on the raw body."""
    if not app_secret:
        raise WebhookRejected(403, "META_APP_SECRET is not set: webhooks cannot be verified")
    given = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.title())
    if not given:
        raise WebhookRejected(401, "missing X-Hub-Signature-256 header")
    if not hmac.compare_digest(given.strip().encode(), sign(body, app_secret).encode()):
        raise WebhookRejected(403, "X-Hub-Signature-256 does not match the body")


def verify_handshake(params: Mapping[str, str], verify_token: str) -> str:
    """The ``hub.challenge`` subscription handshake: echo the challenge if the token matches."""
    if params.get("hub.mode") != "subscribe":
        raise WebhookRejected(400, "hub.mode must be 'subscribe'")
    token = params.get("hub.verify_token", "")
    if not verify_token or not hmac.compare_digest(token.encode(), verify_token.encode()):
        raise WebhookRejected(403, "hub.verify_token does not match META_VERIFY_TOKEN")
    challenge = params.get("hub.challenge")
    if challenge is None:
        raise WebhookRejected(400, "hub.challenge is missing")
    return challenge


def _status_event(status: Mapping[str, Any], where: str) -> StatusEvent | None:
    wamid = str(_require(status, "id", where))
    value = str(_require(status, "status", where))
    if value not in REPORTED_STATUSES:
        return None  # e.g. "deleted", "warning": nothing we track
    errors = _list(status, "errors", where)
    first: Mapping[str, Any] = {}
    if errors:
        if not isinstance(errors[0], Mapping):
            raise WebhookRejected(400, f"malformed webhook: {where}.errors[0] must be an object")
        first = errors[0]
    # Anything but one of our ids (another system's data, a number too big for a row id) is not.
    opaque = str(status.get("biz_opaque_callback_data"))
    our_id = int(opaque) if _OUR_ID.fullmatch(opaque) else None
    return StatusEvent(
        dedup_key=f"meta:status:{wamid}:{value}",
        provider_message_id=wamid,
        status=value,  # type: ignore[arg-type]
        timestamp=_timestamp(status.get("timestamp")),
        our_message_id=our_id,
        error_code=str(first["code"]) if "code" in first else None,
        error_text=describe(first),  # Meta's title and details
        raw=dict(status),
    )


def _untracked_status(status: Mapping[str, Any], where: str) -> NoticeEvent:
    """A status we do not track (``deleted``, ``warning``...): stored, so that it is seen."""
    wamid = str(_require(status, "id", where))
    value = text_at(status, "status")
    return NoticeEvent(
        dedup_key=f"meta:status:{wamid}:{value[:40]}",
        kind="status",
        detail=value[:40],
        timestamp=_timestamp(status.get("timestamp")),
        raw=dict(status),
    )


def _messages_events(
    value: Mapping[str, Any], entry: Mapping[str, Any], where: str
) -> list[ProviderEvent]:
    """The ``messages`` field: statuses of what we sent, contacts' messages, error reports."""
    events: list[ProviderEvent] = []
    for k, status in enumerate(_list(value, "statuses", where)):
        event = _status_event(status, f"{where}.statuses[{k}]")
        events.append(event or _untracked_status(status, f"{where}.statuses[{k}]"))
    # The number it came to: several senders share this webhook (issue 19).
    to = text_at(object_at(value, "metadata", where), "phone_number_id")
    for k, message in enumerate(objects_at(value, "messages", where)):
        one = message_event(message, f"{where}.messages[{k}]")
        events.append(replace(one, to_ref=to) if to else one)
    if "errors" in value:
        events.append(errors_event(value, entry, where))
    if not events:  # neither statuses, messages nor errors: still seen
        events.append(
            NoticeEvent(
                dedup_key=digest_key("messages", text_at(entry, "id"), value),
                kind="messages",
                detail="",
                timestamp=_timestamp(entry.get("time")),
                raw=dict(value),
            )
        )
    return events


def _change_events(
    field: str, value: Mapping[str, Any], entry: Mapping[str, Any], where: str
) -> list[ProviderEvent]:
    if field == "messages":
        return _messages_events(value, entry, where)
    if field == "user_preferences":
        return preference_events(value, where)
    if field in TEMPLATE_SIGNALS:
        return [template_event(field, value, entry, where)]
    if field in SENDER_FIELDS:
        return [sender_event(field, value, entry, where)]
    return notice_events(field, value, entry, where)


def parse(body: bytes) -> list[ProviderEvent]:
    """Every event of a (possibly batched) Cloud API webhook, whatever its fields."""
    payload = json_body(body)
    entries = _require(payload, "entry", "body")
    if not isinstance(entries, list):
        raise WebhookRejected(400, "malformed webhook: body.entry must be a list")
    events: list[ProviderEvent] = []
    for i, entry in enumerate(entries):
        changes = _require(entry, "changes", f"entry[{i}]")
        if not isinstance(changes, list):
            raise WebhookRejected(400, f"malformed webhook: entry[{i}].changes must be a list")
        for j, change in enumerate(changes):
            where = f"entry[{i}].changes[{j}].value"
            value = _require(change, "value", f"entry[{i}].changes[{j}]")
            if not isinstance(value, Mapping):
                raise WebhookRejected(400, f"malformed webhook: {where} must be an object")
            # A body without ``field`` (older simulators) is a messages one.
            field = text_at(change, "field") or "messages"
            events.extend(_change_events(field, value, entry, where))
    return events


def status_payload(
    statuses: list[dict[str, Any]], phone_number_id: str = "simulator"
) -> dict[str, Any]:
    """A Cloud API webhook body carrying ``statuses`` (used by the simulator and tests)."""
    return _envelope({"statuses": statuses}, phone_number_id)


def message_payload(
    messages: list[dict[str, Any]], phone_number_id: str = "simulator"
) -> dict[str, Any]:
    contacts = [{"profile": {"name": ""}, "wa_id": m["from"]} for m in messages]
    return _envelope({"contacts": contacts, "messages": messages}, phone_number_id)


def _envelope(value: dict[str, Any], phone_number_id: str) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "0",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550000000",
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
