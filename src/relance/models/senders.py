"""Senders (one WhatsApp number each) and which of them serve a campaign."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from relance.models.base import Base, utcnow

SENDER_STATUSES = ("active", "slowed", "paused", "stopped")
QUALITY_RATINGS = ("GREEN", "YELLOW", "RED", "UNKNOWN")


class Sender(Base):
    """One number. Its secrets (tokens) stay in the environment: none is stored here.

    The default sender (``is_default``) takes its identifiers from the environment
    (``META_PHONE_NUMBER_ID``, ``TWILIO_FROM``...) when its own are empty, so an install
    configured before senders existed keeps sending from the same number. Recipients and
    messages whose ``sender_id`` is NULL belong to the default sender.
    """

    __tablename__ = "senders"
    __table_args__ = (
        CheckConstraint(
            "status IN ({})".format(", ".join(repr(s) for s in SENDER_STATUSES)),
            name="status_valid",
        ),
        CheckConstraint("throughput_per_second IS NULL OR throughput_per_second > 0", "tps"),
        CheckConstraint("messaging_limit IS NULL OR messaging_limit > 0", "limit_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    provider: Mapped[str] = mapped_column(String(20))
    # The provider's own identifier of the number: the Cloud API's phone_number_id, Twilio's
    # From (whatsapp:+...), a Wassenger device id. Only the one of ``provider`` is set.
    phone_number_id: Mapped[str | None] = mapped_column(String(100))
    twilio_from: Mapped[str | None] = mapped_column(String(100))
    wassenger_device: Mapped[str | None] = mapped_column(String(100))
    display_number: Mapped[str | None] = mapped_column(String(40))
    # NULL: MAX_SENDS_PER_SECOND. Meta: 80/s by default, up to 1,000 after an upgrade.
    throughput_per_second: Mapped[float | None] = mapped_column(Float)
    # Unique users outside their service window per moving 24 h (Meta's messaging limit).
    # NULL: MESSAGING_LIMIT (default none).
    messaging_limit: Mapped[int | None] = mapped_column(Integer)
    # Meta's business portfolio: its numbers share one messaging limit and one count. NULL:
    # the install's one portfolio (every sender without one counts together: counting too
    # many can only make relance wait early, never send past Meta's limit).
    portfolio: Mapped[str | None] = mapped_column(String(100))
    quality_rating: Mapped[str] = mapped_column(String(20), default="UNKNOWN")
    # When the Graph API last answered for this number (its limit, quality and throughput).
    meta_checked_at: Mapped[datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="active")
    paused_reason: Mapped[str | None] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# A campaign's senders and their weights (share of the recipients); none: the default sender.
campaign_senders = Table(
    "campaign_senders",
    Base.metadata,
    Column("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "sender_id", ForeignKey("senders.id", ondelete="RESTRICT"), primary_key=True, index=True
    ),
    Column("weight", Integer, nullable=False, default=1),
    CheckConstraint("weight > 0", name="weight_positive"),
)
