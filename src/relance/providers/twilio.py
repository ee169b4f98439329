"""Twilio (WhatsApp sender) adapter: send through the Messages API, verify and parse webhooks.

Sends are form-encoded ``POST /2010-04-01/Accounts/{SID}/Messages.json`` with HTTP basic auth and
a ``StatusCallback`` pointing at ``{PUBLIC_URL}/webhooks/twilio``. Webhooks are verified with
``X-Twilio-Signature``: base64(HMAC-SHA1(auth token, URL + each POST parameter's name and value,
sorted by name)), computed over the exact URL Twilio called.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from relance.config import Settings
from relance.providers.base import (
    InteractionEvent,
    InteractionKind,
    OutboundMessage,
    PermanentError,
    ProviderError,
    RateLimited,
    ReportedStatus,
    RetryableError,
    SendResult,
    StatusEvent,
    WebhookRejected,
    e164,
)
from relance.providers.http import HttpProvider, json_object, required_id, retry_after_seconds

SIGNATURE_HEADER = "x-twilio-signature"
WEBHOOK_PATH = "/webhooks/twilio"

# 20429 too many requests; 63017 / 63018 account or WhatsApp sender rate limit exceeded.
RATE_LIMIT_CODES = frozenset({20429, 63017, 63018})
# 20003 authentication, 20005 account not active, 20404 account (SID) not found,
# 21212 / 21606 / 21659 / 63007 the From number cannot send, 63112 Meta disabled the account.
SENDER_STOP_CODES = frozenset({20003, 20005, 20404, 21212, 21606, 21659, 63007, 63112})
RETRYABLE_CODES = frozenset({20500, 20503})
# 21211 invalid To, 21408 region not enabled, 21610 recipient unsubscribed, 21614 not a mobile,
# 63003 To not on the channel, 63016 outside the 24 h window, 63024 invalid recipient,
# 63049 Meta chose not to deliver. Any other 4xx is also permanent for the recipient.
PERMANENT_CODES = frozenset({21211, 21408, 21610, 21614, 63003, 63016, 63024, 63049})

STATUS_MAP: dict[str, ReportedStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
    "canceled": "failed",
}
INBOUND_STATUSES = frozenset({"received", "receiving"})


class TwilioProvider(HttpProvider):
    """Sends WhatsApp texts through Twilio's Programmable Messaging API."""

    name = "twilio"

    @property
    def messages_url(self) -> str:
        s = self._settings
        base = s.twilio_api_url.rstrip("/")
        return f"{base}/2010-04-01/Accounts/{s.twilio_account_sid}/Messages.json"

    @property
    def status_callback_url(self) -> str:
        return self._settings.effective_public_url + WEBHOOK_PATH

    def send(self, message: OutboundMessage) -> SendResult:
        """Create one Message resource; answer its ``sid`` or raise a typed ProviderError."""
        s = self._settings
        if not (s.twilio_account_sid and s.twilio_auth_token and s.twilio_from):
            raise PermanentError(
                "config",
                "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM must be set to send with "
                "Twilio",
                stops_sender=True,
            )
        form = {
            "From": whatsapp_address(s.twilio_from),
            "To": whatsapp_address(message.to),
            "Body": message.text,  # Cloud API templates are not Twilio Content: the text goes
            "StatusCallback": self.status_callback_url,
        }
        auth = (s.twilio_account_sid, s.twilio_auth_token)
        response = self._post(self.messages_url, data=form, auth=auth)
        if response.is_success:
            return SendResult(provider_message_id=required_id(response, "sid"))
        raise error_for(response)


def whatsapp_address(number: str) -> str:
    """``whatsapp:+E164`` from a number written with or without the prefix or the '+'."""
    digits = "".join(ch for ch in number.removeprefix("whatsapp:") if ch.isdigit())
    return f"whatsapp:+{digits}"


def error_for(response: httpx.Response) -> ProviderError:
    """Map a failed Twilio response onto RateLimited, RetryableError or PermanentError."""
    status = response.status_code
    payload = json_object(response)
    code = payload.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    label = str(code) if code is not None else f"http_{status}"
    message = payload.get("message")
    text = message if isinstance(message, str) and message else response.text[:200]
    if isinstance(payload.get("more_info"), str):
        text = f"{text} ({payload['more_info']})"
    if code in RATE_LIMIT_CODES or status == 429:
        return RateLimited(label, text, retry_after_seconds(response.headers))
    if code in SENDER_STOP_CODES:
        return PermanentError(label, text, stops_sender=True)
    if code in RETRYABLE_CODES or status >= 500 or status == 408:
        return RetryableError(label, text)
    if code in PERMANENT_CODES:
        return PermanentError(label, text)
    if status in (401, 403):
        return PermanentError(label, text, stops_sender=True)
    return PermanentError(label, text)


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


def parse_twilio(body: bytes) -> list[StatusEvent | InteractionEvent]:
    """Turn one Twilio webhook (status callback or inbound message) into events."""
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
            error_code=error_code if failed else None,
            error_text=(form.get("ErrorMessage") or f"Twilio status {status}") if failed else None,
            raw=dict(form),
        )
    ]


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
