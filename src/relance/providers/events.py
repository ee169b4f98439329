"""The events provider webhooks turn into: a status of one of our messages, a contact's message
or preference, a template signal, or a notice (anything else the provider reports). Each parser
(``meta_webhooks``, ``twilio_webhooks``, ``wassenger_webhooks``) builds them; every one is stored
once, and ``relance.campaigns.inbound`` applies them by the domain's rules
(``relance.campaigns.answer_rule``).
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
# A contact's message by its type: the Cloud API's names (Twilio and Wassenger use the first
# five), ``user_preferences`` for a marketing preference update, ``unknown`` for a type we do not
# know yet (its name in ``subtype``).
InteractionKind = Literal[
    "text",
    "button",
    "interactive",
    "reaction",
    "other",
    "image",
    "video",
    "audio",
    "document",
    "sticker",
    "location",
    "contacts",
    "order",
    "unsupported",
    "system",
    "revoke",
    "edit",
    "request_welcome",
    "user_preferences",
    "unknown",
]


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
    """A contact wrote, tapped a button, reacted, or WhatsApp wrote about it (what counts as an
    answer is the domain's call: ``relance.campaigns.answer_rule``)."""

    dedup_key: str
    from_phone: str  # E.164
    kind: InteractionKind
    text: str
    timestamp: datetime
    # The message it answers (Cloud API ``context.id``, a reaction's ``message_id``).
    context_provider_message_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None  # why it cannot be applied (stored, not applied)
    # The type's own kind: interactive ``button_reply``, system ``user_changed_number``, audio
    # ``voice``, unsupported ``poll_update``, a preference's category, an unknown type's name.
    subtype: str = ""
    # The machine value beside the text: a button's payload, a reply's id, a preference's value.
    payload: str = ""
    # The business number it came to (Cloud API ``metadata.phone_number_id``, Twilio ``To``):
    # which sender it belongs to.
    to_ref: str = ""


@dataclass(frozen=True)
class TemplateEvent:
    """Meta reports a change to one of the account's message templates."""

    dedup_key: str
    signal: Literal["status", "quality", "category"]
    template_id: str
    name: str
    language: str
    value: str  # the new status (APPROVED, PAUSED...), quality score or category
    timestamp: datetime
    previous: str = ""  # the previous quality score or category, when Meta says
    reason: str = ""  # rejection reason, pause title and description...
    raw: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None


@dataclass(frozen=True)
class NoticeEvent:
    """Anything else a provider reports (an error report, an echo of a message the business
    sent, a call, an account update, a status we do not track, an unknown field): stored with
    what it was, never applied."""

    dedup_key: str
    kind: str  # what it is: "errors", "smb_message_echoes", "calls", "status", a field's name
    detail: str  # a short description for the stored outcome
    timestamp: datetime
    raw: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None


@dataclass(frozen=True)
class SenderEvent:
    """Meta reports on one of our numbers or on the whole account: its quality flag, its
    messaging limit or throughput tier (``phone_number_quality_update``), a restriction, a
    ban or its lifting (``account_update``)."""

    dedup_key: str
    signal: Literal["quality", "account"]
    event: str  # FLAGGED, UNFLAGGED, DOWNGRADE, UPGRADE, ACCOUNT_RESTRICTION, DISABLED_UPDATE...
    timestamp: datetime
    display_phone_number: str = ""  # the number it is about; empty: the whole account
    current_limit: str = ""  # TIER_250, TIER_2K, ... TIER_UNLIMITED
    detail: str = ""  # restriction type, ban state, violation type...
    raw: dict[str, Any] = field(default_factory=dict)
    rejected: str | None = None


ProviderEvent = StatusEvent | InteractionEvent | TemplateEvent | NoticeEvent | SenderEvent
