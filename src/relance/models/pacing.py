"""The embedded-mode pacing state of each sender (Redis holds it in production)."""

from __future__ import annotations

from sqlalchemy import Float, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from relance.models.base import Base


class SenderPacing(Base):
    __tablename__ = "sender_pacing"

    sender: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Serialized relance.pacing.domain.PacingState; ``version`` makes updates a compare-and-set.
    state: Mapped[str] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer, default=0)
    blocked_until: Mapped[float] = mapped_column(Float, default=0.0)
