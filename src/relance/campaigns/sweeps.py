"""What Beat sweeps: closed reply windows (E3), the status check and its safety net (R1, R2),
counter reconciliation, and messages a dead worker left ``sending``."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from relance.campaigns import counters, inbox
from relance.campaigns import repository as repo
from relance.campaigns.domain import (
    CampaignStatus,
    MessageStatus,
    RecipientState,
    status_after_check,
)
from relance.campaigns.followups import Followups, after_commit_check
from relance.campaigns.queries import get_campaign
from relance.campaigns.send_failures import fail_messages
from relance.config import Settings
from relance.models import Campaign, Message, Recipient, utcnow

log = logging.getLogger(__name__)
S = RecipientState
C = CampaignStatus


def expire_windows(session: Session, now: datetime | None = None, limit: int = 5000) -> int:
    """Every recipient whose window closed becomes ``no_interaction`` (E3), in bounded batches.

    The compare-and-set on ``awaiting_reply`` makes a racing reply and this sweep give exactly
    one outcome. A window closes only once every webhook accepted before it closed is applied:
    a reply still in the inbox holds its recipient, and so its campaign, open.
    """
    now = now or utcnow()
    settled = inbox.settled_before(session, now)
    candidates = (
        select(Recipient.id)
        .where(Recipient.state == S.AWAITING_REPLY.value, Recipient.window_closes_at <= settled)
        .order_by(Recipient.window_closes_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(candidates))
    if not ids:
        return 0
    rows = repo.move_recipients(
        session, [Recipient.id.in_(ids)], S.AWAITING_REPLY, S.NO_INTERACTION, now
    )
    return len(rows)


def update_campaign_status(session: Session, campaign_id: int, now: datetime | None = None) -> str:
    """The plan's status check: one row read, constant time at any campaign size (R1.2-R1.4)."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id)
    target = status_after_check(C(campaign.status), counters.counts_of(campaign))
    if target == C.COMPLETED and counters.try_complete(session, campaign_id, now):
        return C.COMPLETED.value
    return campaign.status


def reconcile_counters(session: Session, campaign_id: int) -> dict[str, tuple[int, int]]:
    """Recompute the counters from the rows; repair and log any drift. Returns the drift."""
    campaign = get_campaign(session, campaign_id, lock=True)  # holds counter writers back
    truth = counters.recount(session, campaign_id)
    stored = counters.counter_values(campaign)
    drift = {k: (stored[k], v) for k, v in truth.items() if stored.get(k) != v}
    if drift:
        log.warning(
            "campaign counters drifted; repaired",
            extra={
                "campaign_id": campaign_id,
                "drift": {k: f"{a}->{b}" for k, (a, b) in drift.items()},
            },
        )
        for name, (_, value) in drift.items():
            setattr(campaign, name, value)
        session.flush()
    return drift


def check_sending_campaigns(
    session: Session, followups: Followups, reconcile: bool = True
) -> list[int]:
    """R2.1/R2.2: the safety net: reconcile each sending campaign and queue its status check."""
    ids = list(
        session.scalars(
            select(Campaign.id).where(Campaign.status.in_([C.SENDING.value, C.PAUSED.value]))
        )
    )
    for campaign_id in ids:
        if reconcile:
            reconcile_counters(session, campaign_id)
        after_commit_check(session, followups, campaign_id, 0)
    return ids


def recover_interrupted(
    session: Session, settings: Settings, now: datetime | None = None, limit: int = 1000
) -> dict[str, int]:
    """Messages left ``sending`` by a dead worker, once the grace period is over.

    The provider may have sent them: a status webhook matched by our id moves them on during
    the grace period. After it, ``UNKNOWN_OUTCOME_POLICY`` decides (``Settings.outcome_policy``,
    by default per provider): ``fail`` (never risk a duplicate) or ``resend``. The grace ends
    only once every webhook accepted before it ended is applied: a ``sent`` status still in
    the inbox must never turn into a second send.
    """
    now = now or utcnow()
    grace = timedelta(seconds=settings.sending_grace_seconds)
    cutoff = inbox.settled_before(session, now) - grace
    stuck = list(
        session.scalars(
            select(Message.id)
            .where(Message.status == MessageStatus.SENDING.value, Message.claimed_at < cutoff)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not stuck:
        return {"failed": 0, "requeued": 0}
    if settings.outcome_policy == "resend":
        session.execute(
            update(Message)
            .where(Message.id.in_(stuck), Message.status == MessageStatus.SENDING.value)
            .values(status=MessageStatus.PENDING.value, next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
        log.warning("requeued messages of unknown outcome", extra={"messages": len(stuck)})
        return {"failed": 0, "requeued": len(stuck)}
    fail_messages(
        session,
        stuck,
        "outcome_unknown",
        "the worker stopped while sending and no provider status arrived",
        now,
        from_status=MessageStatus.SENDING,
    )
    log.warning("failed messages of unknown outcome", extra={"messages": len(stuck)})
    return {"failed": len(stuck), "requeued": 0}
