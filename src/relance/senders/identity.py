"""What a sender is to the rest of relance: a plain value, and the settings it sends with.

The default sender takes its provider and identifiers from the environment (RELANCE_PROVIDER,
META_PHONE_NUMBER_ID, TWILIO_FROM, WASSENGER_DEVICE): an install configured before senders
existed keeps sending from the same number with the same pace. The secrets (tokens, API keys)
are the environment's for every sender: none is stored in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relance.config import Settings
from relance.models import Sender, utcnow

DEFAULT_NAME = "default"
# The setting that carries each provider's identifier of the number, and the sender's column.
REF_FIELDS = {
    "meta": "phone_number_id",
    "twilio": "twilio_from",
    "wassenger": "wassenger_device",
}
SETTING_OF = {
    "meta": "meta_phone_number_id",
    "twilio": "twilio_from",
    "wassenger": "wassenger_device",
}


@dataclass(frozen=True)
class SenderInfo:
    id: int
    name: str
    provider: str
    ref: str  # the provider's identifier of the number ("" for the simulator's default)
    is_default: bool
    status: str = "active"
    quality_rating: str = "UNKNOWN"
    paused_reason: str | None = None
    throughput_per_second: float | None = None
    messaging_limit: int | None = None
    display_number: str | None = None
    portfolio: str = ""  # "": the install's one portfolio

    @property
    def stored_id(self) -> int | None:
        """What recipients and messages hold: NULL for the default sender."""
        return None if self.is_default else self.id


def env_ref(settings: Settings) -> str:
    """The environment's identifier of the default number."""
    field = SETTING_OF.get(settings.provider)
    return str(getattr(settings, field)) if field else ""


def default_sender_values(settings: Settings) -> dict[str, Any]:
    """The default sender's row, from the environment (the migration and first use)."""
    now = utcnow()
    values: dict[str, Any] = {
        "name": DEFAULT_NAME,
        "provider": settings.provider,
        "phone_number_id": None,
        "twilio_from": None,
        "wassenger_device": None,
        "quality_rating": "UNKNOWN",
        "status": "active",
        "is_default": True,
        "created_at": now,
        "updated_at": now,
    }
    column = REF_FIELDS.get(settings.provider)
    if column and env_ref(settings):
        values[column] = env_ref(settings)
    return values


def info(row: Sender, settings: Settings) -> SenderInfo:
    """A sender as a value; the default one as the environment configures it today."""
    provider = settings.provider if row.is_default else row.provider
    column = REF_FIELDS.get(provider)
    ref = env_ref(settings) if row.is_default else str(getattr(row, column) or "") if column else ""
    return SenderInfo(
        id=row.id,
        name=row.name,
        provider=provider,
        ref=ref,
        is_default=row.is_default,
        status=row.status,
        quality_rating=row.quality_rating,
        paused_reason=row.paused_reason,
        throughput_per_second=row.throughput_per_second,
        messaging_limit=row.messaging_limit,
        display_number=row.display_number,
        portfolio=row.portfolio or "",
    )


def pacing_key(sender: SenderInfo, settings: Settings) -> str:
    """The limiter's key: one pace per number, shared by every worker (the default sender
    keeps the key it had before senders existed)."""
    if sender.is_default:
        return settings.sender_key
    return f"{sender.provider}:{sender.ref or sender.id}"


def sender_settings(sender: SenderInfo, settings: Settings) -> Settings:
    """The settings a provider adapter sends with for this sender: its number, the
    environment's secrets."""
    if sender.is_default:
        return settings
    update: dict[str, Any] = {"provider": sender.provider}
    field = SETTING_OF.get(sender.provider)
    if field:
        update[field] = sender.ref
    return settings.model_copy(update=update)
