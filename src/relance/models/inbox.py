"""The webhook inbox: verified bodies as they came, appended by the route, applied by workers."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relance.models.base import Base, partial_index

# SQLite only autoincrements an INTEGER PRIMARY KEY; PostgreSQL needs 64 bits at Meta's rates.
InboxId = BigInteger().with_variant(Integer(), "sqlite")


class WebhookInbox(Base):
    __tablename__ = "webhook_inbox"
    __table_args__ = (
        # The applier's queue (oldest first) and the inbox lag: both read unapplied rows only,
        # so these stay as small as the backlog whatever the table's size.
        partial_index("ix_webhook_inbox_unapplied_id", "id", where="applied_at IS NULL"),
        partial_index(
            "ix_webhook_inbox_unapplied_received", "received_at", where="applied_at IS NULL"
        ),
    )

    id: Mapped[int] = mapped_column(InboxId, primary_key=True, autoincrement=True)
    provider: Mapped[str] = mapped_column(String(20))
    body: Mapped[bytes] = mapped_column(LargeBinary)  # the raw body whose signature was checked
    url: Mapped[str | None] = mapped_column(Text)  # the signed URL, for parsers that need it
    received_at: Mapped[datetime]
    applied_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)  # why a stored body could not be applied
