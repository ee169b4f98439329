"""The one provider interface, its typed errors, and the events webhooks turn into.

An adapter sends a text (or a Cloud API template) to an E.164 number and answers the provider's
message id, or raises one of three errors the engine knows how to handle:

* ``RetryableError``: transient (timeout, 5xx); the message goes back to pending with backoff.
* ``RateLimited``: the provider asked us to slow down; the sender backs off (``retry_after``)
  and the message is re-queued without counting a failed attempt.
* ``PermanentError``: this message will never go (bad number, 131026); the recipient fails.
  With ``stops_sender`` (expired token, code 190) the whole campaign pauses with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
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


class Provider(Protocol):
    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...

    def close(self) -> None: ...


ReportedStatus = Literal["sent", "delivered", "read", "failed"]
InteractionKind = Literal["text", "button", "interactive", "reaction", "other"]


@dataclass(frozen=True)
class StatusEvent:
    """The provider reports what became of a message we sent."""

    dedup_key: str
    provider_message_id: str
    status: ReportedStatus
    timestamp: datetime
    our_message_id: int | None = None  # from biz_opaque_callback_data, when echoed back
    error_code: str | None = None
    error_text: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None  # why it cannot be applied (stored, not applied)


@dataclass(frozen=True)
class InteractionEvent:
    """A contact wrote, tapped a button or reacted."""

    dedup_key: str
    from_phone: str  # E.164
    kind: InteractionKind
    text: str
    timestamp: datetime
    # The message it answers (Cloud API ``context.id``, a reaction's ``message_id``).
    context_provider_message_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None  # why it cannot be applied (stored, not applied)


ProviderEvent = StatusEvent | InteractionEvent


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
