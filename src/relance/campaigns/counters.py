"""The campaign counters: O(1) statistics kept by every transition, and completion by them.

Each recipient move and message event records its counter changes on the session
(``record_move``, ``record``). They are applied when the transaction commits (a
``before_commit`` hook): one UPDATE per touched campaign, in campaign id order (two transactions
touching the same campaigns lock them in the same order, and each holds the hot campaign row
only at the end), then the completion compare-and-set of each touched campaign (R1.2, R1.3).
No caller has to remember them; ``apply_pending`` applies them early for one that must read the
counters in the same transaction. A savepoint's rollback forgets the changes recorded inside it.
"""

from __future__ import annotations

import functools
import logging
import operator
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, event, func, select, update
from sqlalchemy.orm import Session

from relance.campaigns.domain import (
    OPEN_RECIPIENT_STATES,
    CampaignCounts,
    CampaignStatus,
    MessageKind,
    RecipientState,
)
from relance.db import pending, take_pending
from relance.models import Campaign, Message, Recipient
from relance.providers.failures import LIMITED_CODES

log = logging.getLogger(__name__)

STATE_COUNTERS = {state: f"n_{state.value}" for state in RecipientState}
# Contacts sent Message 1, whose Message 1 was delivered or read, who replied, and the failed
# recipients Meta held back (``limited``, a share of ``n_failed``).
MESSAGE_COUNTERS = ("message_1_sent", "delivered", "read", "interactions", "limited")
_PENDING = "campaign_counters"  # (campaign id, counter, change, when)


def record(session: Session, campaign_id: int, counter: str, now: datetime, n: int = 1) -> None:
    """Add ``n`` to the campaign's ``counter`` when this transaction commits."""
    pending(session, _PENDING).append((campaign_id, counter, n, now))


def record_move(
    session: Session,
    campaign_id: int,
    old: RecipientState,
    new: RecipientState,
    now: datetime,
    n: int = 1,
) -> None:
    """``n`` recipients of the campaign went from ``old`` to ``new``."""
    record(session, campaign_id, STATE_COUNTERS[old], now, -n)
    record(session, campaign_id, STATE_COUNTERS[new], now, n)


def apply_pending(session: Session) -> list[int]:
    """Apply the recorded changes now and complete what they finished; the completed ids."""
    changes: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    latest: dict[int, datetime] = {}
    for campaign_id, counter, n, now in take_pending(session, _PENDING):
        changes[campaign_id][counter] += n
        latest[campaign_id] = max(now, latest.get(campaign_id, now))
    cols = Campaign.__table__.c
    completed = []
    for campaign_id in sorted(changes):
        values = {name: cols[name] + n for name, n in changes[campaign_id].items() if n}
        if values:
            session.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(values)
                .execution_options(synchronize_session=False)
            )
        if try_complete(session, campaign_id, latest[campaign_id]):
            completed.append(campaign_id)
    return completed


@event.listens_for(Session, "before_commit")
def _apply_at_commit(session: Session) -> None:
    if not session.in_nested_transaction():
        apply_pending(session)


def open_recipients_expr() -> Any:
    """The number of open recipients of a campaign row, from the domain's open states."""
    cols = Campaign.__table__.c
    return functools.reduce(
        operator.add, (cols[STATE_COUNTERS[s]] for s in sorted(OPEN_RECIPIENT_STATES))
    )


def try_complete(session: Session, campaign_id: int, now: datetime) -> bool:
    """Complete the campaign if no recipient is open: one compare-and-set on one row (R1.2/R1.3).

    Two transactions finishing the last recipients both run this; the row lock taken by their
    counter updates orders them, and only the second sees zero open recipients.
    """
    result = session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.status.in_([CampaignStatus.SENDING.value, CampaignStatus.PAUSED.value]),
            Campaign.total > 0,
            open_recipients_expr() == 0,
        )
        .values(status=CampaignStatus.COMPLETED.value, completed_at=now, status_reason=None)
        .execution_options(synchronize_session=False)
    )
    done = bool(result.rowcount)  # type: ignore[attr-defined]
    if done:
        log.info("campaign completed", extra={"campaign_id": campaign_id})
    return done


def counts_of(campaign: Campaign) -> CampaignCounts:
    return CampaignCounts(
        **{state.value: getattr(campaign, STATE_COUNTERS[state]) for state in RecipientState},
        message_1_sent=campaign.message_1_sent,
    )


def counter_values(campaign: Campaign) -> Mapping[str, int]:
    names = [*STATE_COUNTERS.values(), *MESSAGE_COUNTERS, "total"]
    return {name: int(getattr(campaign, name)) for name in names}


def recount(session: Session, campaign_id: int) -> dict[str, int]:
    """Every counter recomputed from the rows (the reconciliation's truth)."""
    out = {name: 0 for name in STATE_COUNTERS.values()}
    rows = session.execute(
        select(Recipient.state, func.count())
        .where(Recipient.campaign_id == campaign_id)
        .group_by(Recipient.state)
    )
    for state, n in rows:
        out[STATE_COUNTERS[RecipientState(state)]] = n
    m1 = and_(Message.campaign_id == campaign_id, Message.kind == MessageKind.MESSAGE_1.value)
    # Contacts sent Message 1, each once even when retry_failed sent it again (R2.3).
    out["message_1_sent"] = (
        session.scalar(
            select(func.count(func.distinct(Message.recipient_id))).where(
                m1, Message.sent_at.is_not(None)
            )
        )
        or 0
    )
    # Delivered and read count contacts too: a retried Message 1 delivered again is not a
    # second delivery to count (``outcomes._move_forward`` counts the first one only).
    contacts = func.count(func.distinct(Message.recipient_id))
    out["delivered"] = (
        session.scalar(select(contacts).where(m1, Message.delivered_at.is_not(None))) or 0
    )
    out["read"] = session.scalar(select(contacts).where(m1, Message.read_at.is_not(None))) or 0
    out["interactions"] = (
        session.scalar(
            select(func.count()).where(
                Recipient.campaign_id == campaign_id, Recipient.replied_at.is_not(None)
            )
        )
        or 0
    )
    out["limited"] = (
        session.scalar(
            select(func.count()).where(
                Recipient.campaign_id == campaign_id,
                Recipient.state == RecipientState.FAILED.value,
                Recipient.last_error_code.in_(LIMITED_CODES),
            )
        )
        or 0
    )
    out["total"] = sum(out[name] for name in STATE_COUNTERS.values())
    return out
