"""Twilio webhooks: ``X-Twilio-Signature`` and the parse of status callbacks and messages.

The signature is base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value,
sorted by name)), computed over the exact URL Twilio called.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

from relance.config import Settings
from relance.providers.base import WebhookRejected, e164
from relance.providers.events import (
    REPORTED_STATUSES,
    InteractionEvent,
    InteractionKind,
    ReportedStatus,
    StatusEvent,
)

SIGNATURE_HEADER = "x-twilio-signature"
# The StatusCallback URL's query parameter that carries our message id (``TwilioProvider``).
OUR_ID_PARAM = "m"
_OUR_ID = re.compile(r"[0-9]{1,18}")  # a message id of ours fits a BIGINT

STATUS_MAP: dict[str, ReportedStatus] = {
    **REPORTED_STATUSES,
    "undelivered": "failed",
    "canceled": "failed",
}
INBOUND_STATUSES = frozenset({"received", "receiving"})


def twilio_signature(auth_token: str, url: str, params: Iterable[tuple[str, str]]) -> str:
    """Twilio's documented ``X-Twilio-Signature`` for a form POST to ``url``."""
    by_name: defaultdict[str, set[str]] = defaultdict(set)
    for name, value in params:
        by_name[name].add(value)
    data = url + "".join(
        name + value for name in sorted(by_name) for value in sorted(by_name[name])
    )
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def verify_twilio(settings: Settings, headers: Mapping[str, str], body: bytes, url: str) -> None:
    """Accept the webhook only if ``X-Twilio-Signature`` matches; else WebhookRejected."""
    token = settings.twilio_auth_token
    if not token:
        raise WebhookRejected(403, "TWILIO_AUTH_TOKEN must be set to accept Twilio webhooks")
    signature = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), "")
    if not signature:
        raise WebhookRejected(401, "missing X-Twilio-Signature header")
    params = _form(body)
    for candidate in _url_variants(url):
        expected = twilio_signature(token, candidate, params)
        if hmac.compare_digest(expected.encode(), signature.strip().encode()):
            return
    raise WebhookRejected(403, "wrong X-Twilio-Signature")


def _url_variants(url: str) -> list[str]:
    # Twilio's own validators accept the URL with or without the scheme's default port,
    # since proxies add or drop it.
    parts = urlsplit(url)
    default_port = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if parts.hostname and default_port:
        host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        userinfo = parts.netloc.rpartition("@")[0]
        prefix = f"{userinfo}@" if userinfo else ""
        if parts.port is None:
            variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default_port}")))
        elif parts.port == default_port:
            variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    return variants


def _form(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise WebhookRejected(400, "body: not form-encoded UTF-8") from None


def parse_twilio(body: bytes, url: str = "") -> list[StatusEvent | InteractionEvent]:
    """Turn one Twilio webhook (status callback or inbound message) into events.

    ``url`` is the one Twilio called: a status callback's carries our message id."""
    form = dict(_form(body))
    sid = form.get("MessageSid") or form.get("SmsSid")
    if not sid:
        raise WebhookRejected(400, "MessageSid: missing")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if status in INBOUND_STATUSES or (not status and form.get("From")):
        return [_inbound(sid, form)]
    if not status:
        raise WebhookRejected(400, "MessageStatus: missing (and no From for an inbound message)")
    reported = STATUS_MAP.get(status)
    if reported is None:
        return []  # queued, accepted, sending...: nothing the engine acts on
    failed = reported == "failed"
    error_code = form.get("ErrorCode") or None
    return [
        StatusEvent(
            dedup_key=f"twilio:{sid}:{status}",
            provider_message_id=sid,
            status=reported,
            # Twilio's status callbacks carry no event time: the moment we hear of it.
            timestamp=datetime.now(UTC),
            our_message_id=_our_id(url),
            error_code=error_code if failed else None,
            error_text=(form.get("ErrorMessage") or f"Twilio status {status}") if failed else None,
            raw=dict(form),
        )
    ]


def _our_id(url: str) -> int | None:
    values = parse_qs(urlsplit(url).query).get(OUR_ID_PARAM, [])
    # Anything but one of our ids (a number too big for a row id, a second value) is not.
    return int(values[0]) if len(values) == 1 and _OUR_ID.fullmatch(values[0]) else None


def _inbound(sid: str, form: Mapping[str, str]) -> InteractionEvent:
    sender = form.get("From")
    if not sender:
        raise WebhookRejected(400, "From: missing")
    kind, text = _kind_and_text(form)
    return InteractionEvent(
        dedup_key=f"twilio:in:{sid}",
        from_phone=e164(sender),
        kind=kind,
        text=text,
        timestamp=datetime.now(UTC),
        context_provider_message_id=form.get("OriginalRepliedMessageSid") or None,
        raw=dict(form),
        to_ref=form.get("To", "")[:100],  # our number it came to: which sender's
    )


def _kind_and_text(form: Mapping[str, str]) -> tuple[InteractionKind, str]:
    message_type = form.get("MessageType", "").lower()
    body = form.get("Body", "")
    if form.get("ButtonText") or form.get("ButtonPayload") or message_type == "button":
        return "button", form.get("ButtonText") or form.get("ButtonPayload") or body
    if message_type == "interactive":
        return "interactive", form.get("ListTitle") or form.get("ListId") or body
    if message_type == "reaction":
        return "reaction", body
    if message_type in ("", "text"):
        return "text", body
    return "other", body
