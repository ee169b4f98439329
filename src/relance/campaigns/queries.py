"""The read side of campaigns: one campaign, lists, stats, what blocks, sends per minute."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from relance.campaigns.counters import counts_of
from relance.campaigns.domain import CampaignStatus, MessageKind, MessageStatus, RecipientState
from relance.campaigns.repository import OPEN_STATE_VALUES
from relance.errors import found
from relance.models import (
    Campaign,
    Contact,
    Message,
    Recipient,
    campaign_categories,
    campaign_contacts,
    campaign_senders,
)

S = RecipientState
C = CampaignStatus
TIMELINE_MAX_MINUTES = 120


def get_campaign(session: Session, campaign_id: int, lock: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id)
    if lock:
        query = query.with_for_update()
    return found(session.scalars(query).one_or_none(), "campaign", campaign_id)


def campaign_stats(campaign: Campaign) -> dict[str, Any]:
    """SPEC section 5 fields, read from the O(1) counters."""
    counts = counts_of(campaign)
    return {
        "campaign_id": campaign.id,
        "status": campaign.status,
        "status_reason": campaign.status_reason,
        "total": campaign.total,
        "pending": counts.pending,
        "message_1_sent": campaign.message_1_sent,
        "delivered": campaign.delivered,
        "read": campaign.read,
        "interactions": campaign.interactions,
        "awaiting_reply": counts.awaiting_reply,
        "message_2_sent": counts.message_2_sent,
        "no_interaction": counts.no_interaction,
        "failed": counts.failed,
        "limited": campaign.limited,
        "opted_out": counts.opted_out,
        "cancelled": counts.cancelled,
        "done": counts.done,
        "skipped_opted_out": campaign.skipped_opted_out,
        "finished": counts.finished,
        "completed": campaign.status == C.COMPLETED,
        "completed_at": campaign.completed_at,
        "cancelled_at": campaign.cancelled_at,
        "started_at": campaign.started_at,
    }


def blocking_recipients(
    session: Session, campaign_id: int, limit: int = 100, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The recipients that still keep the campaign from completing, with why."""
    get_campaign(session, campaign_id)
    rows = session.execute(
        select(
            Recipient, Contact.phone, Message.status, Message.claimed_at, Message.next_attempt_at
        )
        # Outer: an anonymised recipient (its contact deleted) is final, so never listed
        # here; if one ever were, it must show rather than vanish.
        .outerjoin(Contact, Contact.id == Recipient.contact_id)
        .outerjoin(
            Message,
            and_(
                Message.recipient_id == Recipient.id,
                Message.status.in_([MessageStatus.PENDING.value, MessageStatus.SENDING.value]),
            ),
        )
        .where(
            Recipient.campaign_id == campaign_id,
            or_(*(Recipient.state == s for s in OPEN_STATE_VALUES)),
        )
        .order_by(Recipient.id)
        .limit(limit)
    )
    out = []
    for recipient, phone, message_status, claimed_at, next_attempt_at in rows:
        if recipient.state == S.AWAITING_REPLY and recipient.window_closes_at is not None:
            why = f"awaiting reply until {recipient.window_closes_at.isoformat()}"
        elif message_status == MessageStatus.SENDING:
            why = f"sending since {claimed_at.isoformat() if claimed_at else 'unknown'}"
        elif next_attempt_at and now and next_attempt_at > now:
            why = f"waiting to send (retry at {next_attempt_at.isoformat()})"
        else:
            which = "Message 2" if recipient.state == S.REPLIED else "Message 1"
            why = f"waiting to send {which}"
        out.append(
            {
                "recipient_id": recipient.id,
                "contact_id": recipient.contact_id,
                "phone": phone,
                "state": recipient.state,
                "reason": why,
                "window_closes_at": recipient.window_closes_at,
            }
        )
    return out


def campaign_out(session: Session, campaign: Campaign) -> dict[str, Any]:
    category_ids = list(
        session.scalars(
            select(campaign_categories.c.category_id)
            .where(campaign_categories.c.campaign_id == campaign.id)
            .order_by(campaign_categories.c.category_id)
        )
    )
    contact_ids = list(
        session.scalars(
            select(campaign_contacts.c.contact_id)
            .where(campaign_contacts.c.campaign_id == campaign.id)
            .order_by(campaign_contacts.c.contact_id)
        )
    )
    senders = [
        {"sender_id": sender_id, "weight": weight}
        for sender_id, weight in session.execute(
            select(campaign_senders.c.sender_id, campaign_senders.c.weight)
            .where(campaign_senders.c.campaign_id == campaign.id)
            .order_by(campaign_senders.c.sender_id)
        )
    ]
    counts = counts_of(campaign)
    return {
        **{
            name: getattr(campaign, name)
            for name in (
                "id",
                "name",
                "message_1",
                "message_1_template",
                "message_2",
                "message_2_template",
                "reply_window_seconds",
                "placeholder_defaults",
                "status",
                "status_reason",
                "total",
                "created_at",
                "scheduled_at",
                "started_at",
                "completed_at",
                "cancelled_at",
            )
        },
        "category_ids": category_ids,
        "contact_ids": contact_ids,
        "senders": senders,
        "finished": counts.finished,
    }


def list_campaigns(
    session: Session, limit: int, offset: int, status: str | None
) -> tuple[list[Campaign], int]:
    query = select(Campaign)
    if status:
        query = query.where(Campaign.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Campaign.id.desc()).limit(limit).offset(offset)).all()
    return list(items), total


def _minute_of_sent_at(session: Session) -> ColumnElement[str]:
    """``YYYY-MM-DD HH:MM`` of ``messages.sent_at`` in UTC, on SQLite and PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H:%M", Message.sent_at)
    return func.to_char(func.timezone("UTC", Message.sent_at), "YYYY-MM-DD HH24:MI")


def timeline(session: Session, campaign_id: int) -> dict[str, Any]:
    """Messages sent per minute (last two hours with sends), for the campaign page's chart."""
    get_campaign(session, campaign_id)
    minute = _minute_of_sent_at(session).label("minute")
    rows = session.execute(
        select(minute, Message.kind, func.count())
        .where(Message.campaign_id == campaign_id, Message.sent_at.is_not(None))
        .group_by(minute, Message.kind)
    ).all()
    counts: dict[datetime, dict[str, int]] = {}
    for text, kind, n in rows:
        start = datetime.strptime(str(text), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        counts.setdefault(start, {})[str(kind)] = int(n)
    if not counts:
        return {"campaign_id": campaign_id, "buckets": []}
    last = max(counts)
    first = max(min(counts), last - timedelta(minutes=TIMELINE_MAX_MINUTES - 1))
    buckets = []
    at = first
    while at <= last:  # every minute, the silent ones too, so the bars keep their scale
        row = counts.get(at, {})
        buckets.append(
            {
                "start": at,
                "message_1": row.get(MessageKind.MESSAGE_1.value, 0),
                "message_2": row.get(MessageKind.MESSAGE_2.value, 0),
            }
        )
        at += timedelta(minutes=1)
    return {"campaign_id": campaign_id, "buckets": buckets}
