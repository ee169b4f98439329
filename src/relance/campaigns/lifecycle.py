"""What people do to a running campaign: pause, resume, cancel, retry its failed (or only its
limited) sends."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, literal, or_
from sqlalchemy.orm import Session

from relance.campaigns import counters
from relance.campaigns import repository as repo
from relance.campaigns.claims import PRIORITY
from relance.campaigns.domain import CampaignStatus, MessageKind, MessageStatus, RecipientState
from relance.campaigns.followups import Followups, after_commit_dispatch
from relance.campaigns.queries import get_campaign
from relance.config import Settings
from relance.errors import Conflict
from relance.models import Campaign, Message, Recipient, utcnow
from relance.providers.failures import LIMITED_CODES

S = RecipientState
C = CampaignStatus


def pause_campaign(session: Session, campaign_id: int, reason: str | None = None) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status != C.SENDING:
        raise Conflict(
            f"campaign {campaign_id} is {campaign.status}: only a sending campaign can be paused"
        )
    campaign.status = C.PAUSED.value
    campaign.paused_at = utcnow()
    campaign.status_reason = reason
    campaign.paused_for = None  # a person's pause (or a provider's refusal): no one resumes it
    session.flush()
    return campaign


def resume_campaign(session: Session, followups: Followups, campaign_id: int) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status != C.PAUSED:
        raise Conflict(
            f"campaign {campaign_id} is {campaign.status}: only a paused campaign can be resumed"
        )
    campaign.status = C.SENDING.value
    campaign.status_reason = None
    campaign.paused_for = None
    session.flush()
    after_commit_dispatch(session, followups)
    return campaign


def cancel_campaign(session: Session, campaign_id: int, now: datetime | None = None) -> Campaign:
    """Remaining recipients become ``cancelled`` and their unsent messages never go."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status in (C.COMPLETED, C.CANCELLED):
        raise Conflict(f"campaign {campaign_id} is already {campaign.status}")
    for state in (S.QUEUED, S.AWAITING_REPLY, S.REPLIED):
        repo.move_recipients(
            session, [Recipient.campaign_id == campaign_id], state, S.CANCELLED, now
        )
    repo.fail_unsent_messages(
        session,
        [Message.campaign_id == campaign_id],
        "cancelled",
        "the campaign was cancelled",
        now,
    )
    campaign.status = C.CANCELLED.value
    campaign.cancelled_at = now  # completed_at stays for completed campaigns only
    session.flush()
    counters.apply_pending(session)  # the answer shows the counters as they now are
    session.refresh(campaign)
    return campaign


def retry_failed(
    session: Session,
    settings: Settings,
    followups: Followups,
    campaign_id: int,
    now: datetime | None = None,
    only_limited: bool = False,
) -> int:
    """Failed recipients get a new Message 1 attempt; the campaign goes back to ``sending``.

    ``only_limited``: only those Meta held back (per-user marketing limit, ``limited``), for
    retry-limited. The new Message 1 rows are created here, pending: the dispatcher sends them
    like any retry. The recipients keep their ``message_1_created_at`` (stamped when their first
    Message 1 was created), so no claim creates another one for them.
    """
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in (C.SENDING, C.PAUSED, C.COMPLETED):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: nothing to retry")
    # A deleted contact's recipient (anonymised) has no one left to send to.
    ours = [Recipient.campaign_id == campaign_id, Recipient.contact_id.is_not(None)]
    limited = Recipient.last_error_code.in_(LIMITED_CODES)
    rows = _requeue_failed(session, [*ours, limited], now)
    if rows:  # they leave the limited ones
        counters.record(session, campaign_id, "limited", now, -len(rows))
    if not only_limited:
        others = or_(Recipient.last_error_code.is_(None), ~limited)
        rows += _requeue_failed(session, [*ours, others], now)
    if not rows:
        which = "limited by Meta" if only_limited else "failed"
        raise Conflict(
            f"campaign {campaign_id} has no {which} recipient to retry "
            "(those of deleted contacts are not retried)"
        )
    session.add_all(
        Message(
            recipient_id=row.id,
            campaign_id=campaign_id,
            kind=MessageKind.MESSAGE_1.value,
            priority=PRIORITY[MessageKind.MESSAGE_1],
            status=MessageStatus.PENDING.value,
            provider=settings.provider,
            sender_id=row.sender_id,  # a retry leaves from the contact's number too
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        for row in rows
    )
    counters.apply_pending(session)
    session.refresh(campaign)
    if campaign.status == C.COMPLETED:
        campaign.status = C.SENDING.value
        campaign.completed_at = None
    session.flush()
    after_commit_dispatch(session, followups)
    return len(rows)


def _requeue_failed(session: Session, where: list[Any], now: datetime) -> list[Any]:
    return repo.move_recipients(
        session,
        where,
        S.FAILED,
        S.QUEUED,
        now,
        last_error=None,
        last_error_code=None,
        window_closes_at=None,
        message_1_created_at=func.coalesce(
            Recipient.message_1_created_at, literal(now, Recipient.message_1_created_at.type)
        ),
    )
