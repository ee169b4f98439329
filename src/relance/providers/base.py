"""The one provider interface, its typed errors, and what webhook parsers share.

An adapter sends a text (or a Cloud API template) to an E.164 number and answers the provider's
message id, or raises one of three errors the engine knows how to handle:

* ``RetryableError``: transient (timeout, 5xx); the message goes back to pending with backoff.
* ``RateLimited``: the provider asked us to slow down; the sender backs off (``retry_after``)
  and the message is re-queued without counting a failed attempt.
* ``PermanentError``: this message will never go (bad number, 131026); the recipient fails.
  With ``stops_sender`` (expired token, code 190) the whole campaign pauses with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True)
class OutboundMessage:
    message_id: int  # ours; sent as biz_opaque_callback_data where the provider supports it
    to: str  # E.164
    text: str
    template: dict[str, Any] | None = None  # {"name", "language", "parameters": [str, ...]}
    # Message 2 answers a contact who just wrote: it is inside WhatsApp's 24 h service window.
    kind: Literal["message_1", "message_2"] = "message_1"


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str


class ProviderError(Exception):
    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


class RetryableError(ProviderError):
    """Transient: try again later."""


class RateLimited(RetryableError):
    def __init__(self, code: str, text: str, retry_after: float | None = None) -> None:
        super().__init__(code, text)
        self.retry_after = retry_after


class PermanentError(ProviderError):
    def __init__(self, code: str, text: str, stops_sender: bool = False) -> None:
        super().__init__(code, text)
        self.stops_sender = stops_sender


# What a failure means beyond "this message did not go", the same whatever the provider's
# code for it (``relance.providers.failures`` maps codes to it): the contact stopped marketing
# messages, the provider held a marketing message back (a per-user limit: try again later), or
# only a template may reach the contact now (its last message is more than 24 h old).
FailureEffect = Literal["opted_out", "limited", "needs_template"]


class Provider(Protocol):
    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...

    def close(self) -> None: ...


class WebhookRejected(Exception):
    """A webhook that must change nothing: bad signature (401/403) or malformed (400)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


def e164(raw: str) -> str:
    """Provider numbers come without '+' (Cloud API ``wa_id``) or as ``whatsapp:+...``."""
    value = raw.strip().removeprefix("whatsapp:")
    digits = "".join(ch for ch in value if ch.isdigit())
    if not digits:
        raise WebhookRejected(400, f"not a phone number: {raw!r}")
    return "+" + digits


def json_body(body: bytes) -> dict[str, Any]:
    """A webhook's body as a JSON object, or WebhookRejected (400) saying why it is not one."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected(400, f"malformed webhook: body is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "malformed webhook: body must be a JSON object")
    return payload
