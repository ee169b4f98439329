"""What the senders API reads and answers. No secret is ever part of it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from relance.contacts.schemas import no_nul

ProviderName = Literal["simulator", "meta", "wassenger", "twilio"]
Text = Annotated[str, AfterValidator(no_nul)]  # PostgreSQL refuses NUL: a 422, not a 500
Ref = Text | None
MAX_TPS = 1000.0  # Meta's highest throughput tier


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SenderFields(Strict):
    display_number: Text | None = Field(default=None, max_length=40, examples=["+33 6 12 34 56"])
    throughput_per_second: float | None = Field(
        default=None, gt=0, le=MAX_TPS, description="null: MAX_SENDS_PER_SECOND"
    )
    messaging_limit: int | None = Field(
        default=None,
        gt=0,
        le=10_000_000,
        description="unique users outside their service window per moving 24 h; null: "
        "MESSAGING_LIMIT (default none)",
    )
    portfolio: Text | None = Field(
        default=None,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Meta's business portfolio (its id, or a name): the senders of one "
        "portfolio share its messaging limit and its count; null: the install's one portfolio",
    )


class SenderCreate(SenderFields):
    name: Text = Field(min_length=1, max_length=100)
    provider: ProviderName
    phone_number_id: Ref = Field(default=None, max_length=100, pattern=r"^[0-9]+$")
    twilio_from: Ref = Field(default=None, max_length=100, examples=["whatsapp:+14155238886"])
    wassenger_device: Ref = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")


class SenderUpdate(SenderFields):
    name: Text | None = Field(default=None, min_length=1, max_length=100)
    status: Literal["active", "paused"] | None = Field(
        default=None,
        description="paused: its Message 1s wait (Message 2s still go); active: resume. "
        "A stopped sender is made active again here once its account is restored.",
    )
    # PATCH semantics: a field left out is unchanged; these say "set it back to the default".
    clear: list[
        Literal["display_number", "throughput_per_second", "messaging_limit", "portfolio"]
    ] = Field(default_factory=list, max_length=4)


class SenderOut(BaseModel):
    id: int
    name: str
    provider: str
    phone_number_id: str | None
    twilio_from: str | None
    wassenger_device: str | None
    display_number: str | None
    throughput_per_second: float | None
    messaging_limit: int | None
    portfolio: str | None
    quality_rating: str
    meta_checked_at: datetime | None
    status: str
    paused_reason: str | None
    is_default: bool
    created_at: datetime
    updated_at: datetime
    # Filled by the list and the page: unique users its portfolio messaged in the moving 24 h.
    limit_used: int | None = None


class SenderList(BaseModel):
    items: list[SenderOut]
    total: int
