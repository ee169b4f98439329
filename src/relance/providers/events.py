"""The events provider webhooks turn into: a status of one of our messages, or a contact's
message. Each parser (``meta_webhooks``, ``twilio_webhooks``, ``wassenger_webhooks``) builds them;
``relance.campaigns.inbound`` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

ReportedStatus = Literal["sent", "delivered", "read", "failed"]
# The statuses every provider names as we do; each adds its own words for them.
REPORTED_STATUSES: dict[str, ReportedStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
}
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
