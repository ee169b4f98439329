"""Campaigns, their audience, recipients (campaign x contact) and messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from relance.campaigns.domain import CampaignStatus, MessageKind, MessageStatus, RecipientState
from relance.models.base import Base, link_table, partial_index, utcnow


def _in(
    column: str, enum: type[CampaignStatus | RecipientState | MessageStatus | MessageKind]
) -> str:
    return f"{column} IN ({', '.join(repr(e.value) for e in enum)})"


campaign_categories = link_table(
    "campaign_categories", "campaign_id->campaigns", "category_id->categories"
)
# contact_id indexed: deleting a contact looks it up here (the check for campaigns not started
# yet, then ON DELETE CASCADE), which otherwise scans every campaign's list.
campaign_contacts = link_table(
    "campaign_contacts", "campaign_id->campaigns", "contact_id->contacts", index_right=True
)


def _counter() -> Mapped[int]:
    return mapped_column(Integer, default=0, server_default="0")


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(_in("status", CampaignStatus), name="status_valid"),
        # R1.3: a completed campaign always has its completion time.
        CheckConstraint(
            "status <> 'completed' OR completed_at IS NOT NULL", name="completed_has_completed_at"
        ),
        CheckConstraint("reply_window_seconds > 0", name="reply_window_positive"),
        Index("ix_campaigns_status", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    message_1: Mapped[str] = mapped_column(Text)
    # Cloud API templates (campaigns/templates.py): Message 1's, and Message 2's once the
    # 24 h window its reply opened has closed.
    message_1_template: Mapped[dict[str, Any] | None]
    message_2: Mapped[str | None] = mapped_column(Text)
    message_2_template: Mapped[dict[str, Any] | None]
    placeholder_defaults: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reply_window_seconds: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default=CampaignStatus.DRAFT.value)
    status_reason: Mapped[str | None] = mapped_column(Text)
    # Set when relance paused the campaign itself (``template:<name>:<language>``: Meta paused
    # its Message 1 template); relance resumes it when the cause clears. NULL: a person did.
    paused_for: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    scheduled_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    paused_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    # O(1) statistics: every transition updates these in its own transaction.
    total: Mapped[int] = _counter()
    skipped_opted_out: Mapped[int] = _counter()
    n_queued: Mapped[int] = _counter()
    n_awaiting_reply: Mapped[int] = _counter()
    n_replied: Mapped[int] = _counter()
    n_message_2_sent: Mapped[int] = _counter()
    n_no_interaction: Mapped[int] = _counter()
    n_failed: Mapped[int] = _counter()
    n_cancelled: Mapped[int] = _counter()
    n_opted_out: Mapped[int] = _counter()
    n_done: Mapped[int] = _counter()
    message_1_sent: Mapped[int] = _counter()
    delivered: Mapped[int] = _counter()
    read: Mapped[int] = _counter()
    interactions: Mapped[int] = _counter()
    # Failed recipients that Meta held back (per-user marketing limit): retry-limited's share.
    limited: Mapped[int] = _counter()


class Recipient(Base):
    __tablename__ = "recipients"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id"),
        CheckConstraint(_in("state", RecipientState), name="state_valid"),
        # With the id: a page of one state, in id order, is an ordered scan of this index that
        # stops after the page (campaigns/recipient_list.py), at any depth and any size.
        Index("ix_recipients_campaign_state_id", "campaign_id", "state", "id"),
        Index("ix_recipients_contact_state", "contact_id", "state"),
        # The dispatcher's queue for Message 1: queued recipients whose row is not created yet,
        # in id order per campaign. Partial, like the messages' dispatch index, so that the
        # claim is an ordered scan of it whatever the planner's statistics (right after a launch
        # there are none, and a bitmap scan sorted every queued recipient on each claim).
        # sender_id: each sender's queue is claimed apart (pacing is per sender).
        partial_index(
            "ix_recipients_message_1_due",
            "campaign_id",
            "sender_id",
            "id",
            where="state = 'queued' AND message_1_created_at IS NULL",
        ),
        # The expiry sweep only looks at open windows: keep that index small.
        partial_index(
            "ix_recipients_open_windows", "window_closes_at", where="state = 'awaiting_reply'"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    # NULL once the contact is deleted: the recipient stays, anonymised, so that a finished
    # campaign's numbers still add up. Such a recipient is always final (a contact with an
    # open recipient cannot be deleted), so the dispatcher never meets one.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contacts.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(20), default=RecipientState.QUEUED.value)
    window_closes_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    awaiting_reply_at: Mapped[datetime | None]
    replied_at: Mapped[datetime | None]
    message_2_sent_at: Mapped[datetime | None]
    no_interaction_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    opted_out_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # The provider's code of that failure (Meta's 131049...), shown and filtered on.
    last_error_code: Mapped[str | None] = mapped_column(String(50))
    # What the answer said (its text), or what it was (a button's title, an emoji, "image").
    reply_text: Mapped[str | None] = mapped_column(Text)
    # When the claim created this recipient's Message 1 row; NULL: none yet (the launch creates
    # recipients only, the dispatcher creates each Message 1 as it claims it).
    message_1_created_at: Mapped[datetime | None]
    # The number that serves this contact (assigned at launch; NULL: the default sender). No
    # foreign key: campaign_senders already holds the sender, and a check per row slows launches.
    sender_id: Mapped[int | None]


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(_in("status", MessageStatus), name="status_valid"),
        CheckConstraint(_in("kind", MessageKind), name="kind_valid"),
        # The dispatcher's claim: Message 2 (priority 0) before Message 1, then launch order.
        partial_index(
            "ix_messages_dispatch",
            "priority",
            "campaign_id",
            "sender_id",
            "id",
            where="status = 'pending'",
        ),
        # Crash recovery looks for messages left in ``sending``.
        partial_index("ix_messages_sending", "claimed_at", where="status = 'sending'"),
        Index("ix_messages_recipient", "recipient_id"),
        # Unique when set; partial so that the rows not yet sent cost no index entry.
        partial_index(
            "uq_messages_provider_message_id",
            "provider_message_id",
            where="provider_message_id IS NOT NULL",
            unique=True,
        ),
        # Each sender's Message 1s over the moving 24 h: its messaging limit (senders/usage).
        partial_index(
            "ix_messages_sender_window",
            "sender_id",
            "created_at",
            where="kind = 'message_1'",
        ),
        # Sends per campaign over time (dashboard timeline, counter reconciliation).
        partial_index(
            "ix_messages_campaign_sent", "campaign_id", "sent_at", where="sent_at IS NOT NULL"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    # A copy of the recipient's campaign, for claims and counters; no foreign key of its own:
    # the recipient's already guarantees it, and a second check per row slowed launches.
    campaign_id: Mapped[int]
    kind: Mapped[str] = mapped_column(String(20))
    priority: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(20), default=MessageStatus.PENDING.value)
    provider: Mapped[str] = mapped_column(String(20))
    # The recipient's sender, copied: the claim and the messaging limit read it per sender.
    sender_id: Mapped[int | None]
    provider_message_id: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = _counter()
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(50))
    error_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
