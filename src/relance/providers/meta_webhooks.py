"""WhatsApp Cloud API webhooks: signature, verification handshake, payload parsing.

Meta signs the raw body: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>``.
The simulator signs its webhooks the same way, so one parser serves both.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from relance.providers.base import WebhookRejected, e164, json_body
from relance.providers.events import (
    REPORTED_STATUSES,
    InteractionEvent,
    InteractionKind,
    ProviderEvent,
    StatusEvent,
)
from relance.providers.meta_errors import describe

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


def _timestamp(raw: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(raw), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)


def _require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise WebhookRejected(400, f"malformed webhook: {where}.{key} is missing")
    return obj[key]


def _object(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """An optional nested object: absent gives {}, any other shape is malformed (400, not 500)."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebhookRejected(400, f"malformed webhook: {where}.{key} must be an object")
    return value


def _list(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookRejected(400, f"malformed webhook: {where}.{key} must be a list")
    return value


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


def _message_event(message: Mapping[str, Any], where: str) -> InteractionEvent:
    wamid = str(_require(message, "id", where))
    kind_raw = str(message.get("type", "other"))
    context_id = _object(message, "context", where).get("id")
    kind: InteractionKind = "other"
    text = ""
    if kind_raw == "text":
        kind, text = "text", str(_object(message, "text", where).get("body", ""))
    elif kind_raw == "button":
        kind = "button"
        button = _object(message, "button", where)
        text = str(button.get("text") or button.get("payload") or "")
    elif kind_raw == "interactive":
        kind = "interactive"
        inner = _object(message, "interactive", where)
        at = f"{where}.interactive"
        reply = _object(inner, "button_reply", at) or _object(inner, "list_reply", at)
        text = str(reply.get("title") or reply.get("id") or "")
    elif kind_raw == "reaction":
        kind = "reaction"
        reaction = _object(message, "reaction", where)
        text = str(reaction.get("emoji", ""))
        context_id = reaction.get("message_id") or context_id
    return InteractionEvent(
        dedup_key=f"meta:message:{wamid}",
        from_phone=e164(str(_require(message, "from", where))),
        kind=kind,
        text=text,
        timestamp=_timestamp(message.get("timestamp")),
        context_provider_message_id=str(context_id) if context_id else None,
        raw=dict(message),
    )


def parse(body: bytes) -> list[ProviderEvent]:
    """Every status and inbound message of a (possibly batched) Cloud API webhook."""
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
            for k, status in enumerate(_list(value, "statuses", where)):
                event = _status_event(status, f"{where}.statuses[{k}]")
                if event is not None:
                    events.append(event)
            for k, message in enumerate(_list(value, "messages", where)):
                events.append(_message_event(message, f"{where}.messages[{k}]"))
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
