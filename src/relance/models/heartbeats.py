"""Heartbeats: when each worker and Beat last said it was alive."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from relance.models.base import Base


class Heartbeat(Base):
    __tablename__ = "heartbeats"

    role: Mapped[str] = mapped_column(String(20), primary_key=True)  # worker | beat
    name: Mapped[str] = mapped_column(String(200), primary_key=True)  # host and process
    pid: Mapped[int]
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]
