"""A campaign's results for its stats: rates, time from Message 1 to reply, estimated end."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relance.campaigns.counters import counts_of
from relance.campaigns.domain import MessageKind, RecipientState
from relance.campaigns.rates import Remaining, estimated_finish, percentile, rates
from relance.config import Settings
from relance.models import Campaign, Message, Recipient
from relance.pacing.domain import last_send_at
from relance.pacing.limiter import LimiterUnavailable, make_limiter

S = RecipientState
# At most this many replies are read for the percentiles: a systematic sample (every k-th
# recipient by id) beyond it, so that the stats of a million-contact campaign stay cheap.
REPLY_SAMPLE = 20_000
# Where a contact who answered can be: its Message 2 waiting, sent, failed, or opted out.
ANSWERED_STATES = (S.REPLIED, S.MESSAGE_2_SENT, S.FAILED, S.OPTED_OUT)


def campaign_rates(campaign: Campaign) -> dict[str, float | None]:
    counts = counts_of(campaign)
    return rates(
        campaign.message_1_sent,
        campaign.delivered,
        campaign.read,
        campaign.interactions,
        counts.message_2_sent,
    )


def reply_times(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Seconds from Message 1 (the window opening) to the answer: median and p90."""
    replies = int(campaign.interactions)
    step = max(1, math.ceil(replies / REPLY_SAMPLE))
    query = select(Recipient.awaiting_reply_at, Recipient.replied_at).where(
        Recipient.campaign_id == campaign.id,
        Recipient.state.in_([s.value for s in ANSWERED_STATES]),
        Recipient.replied_at.is_not(None),
        Recipient.awaiting_reply_at.is_not(None),
    )
    if step > 1:
        query = query.where(Recipient.id % step == 0)
    seconds = [
        max(0.0, (replied - opened).total_seconds())
        for opened, replied in session.execute(query.limit(REPLY_SAMPLE)).tuples()
        if opened is not None and replied is not None
    ]
    median, p90 = percentile(seconds, 0.5), percentile(seconds, 0.9)
    return {
        "replies": replies,
        "sampled": len(seconds),
        "median_seconds": round(median, 3) if median is not None else None,
        "p90_seconds": round(p90, 3) if p90 is not None else None,
    }


def finish_estimate(
    session: Session, settings: Settings, campaign: Campaign, now: datetime
) -> datetime | None:
    """When a sending campaign should complete if it has the sender to itself (None: not
    sending, or the pacing store is unreachable)."""
    counts = counts_of(campaign)
    if campaign.status != "sending":
        return None
    last_m1 = session.scalar(
        # The index (campaign_id, sent_at) read backwards: the latest sends first.
        select(func.max(Message.sent_at)).where(
            Message.campaign_id == campaign.id,
            Message.sent_at.is_not(None),
            Message.kind == MessageKind.MESSAGE_1.value,
        )
    )
    remaining = Remaining(
        status=campaign.status,
        message_1_left=counts.queued,
        open_recipients=counts.total - counts.finished,
        last_message_1_sent_at=last_m1,
        reply_window_seconds=campaign.reply_window_seconds,
        has_message_2=bool(campaign.message_2 or campaign.message_2_template),
    )
    limiter = make_limiter(settings)
    try:
        state = limiter.state(session)
    except LimiterUnavailable:
        return None
    # Message 2s go first: the queued Message 1s wait behind those of the replies.
    sends = counts.queued + counts.replied
    ends = datetime.fromtimestamp(last_send_at(state, limiter.rules, now.timestamp(), sends), UTC)
    return estimated_finish(remaining, now, ends)
