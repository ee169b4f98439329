"""What became of our messages: the provider's answer to a send, and its later statuses.

A send's answer is recorded after the call (``record_outcomes``): ``sent``, a retry with
backoff, or ``failed`` for good. A status webhook (``apply_status``) only moves a message
forward; about a message still ``sending`` (the worker died before recording the answer) it
proves the send happened. Recipients follow their messages by compare-and-set, and every
Message 2 sent or failed queues the plan's status check (R1.1, R3.4, E2).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from relance.campaigns import counters
from relance.campaigns import repository as repo
from relance.campaigns.domain import (
    Applied,
    CampaignStatus,
    MessageKind,
    MessageStatus,
    Outcome,
    RecipientState,
    next_message_status,
    recipient_state_after_message_1,
)
from relance.campaigns.followups import Followups, after_commit_check
from relance.campaigns.lifecycle import pause_campaign
from relance.campaigns.send_failures import fail_messages
from relance.config import Settings
from relance.db import on_commit
from relance.models import Campaign, Message, Recipient, utcnow
from relance.pacing.limiter import AnyLimiter, LimiterUnavailable
from relance.providers.base import PermanentError, ProviderError, RateLimited
from relance.providers.events import StatusEvent
from relance.senders.service import set_state

log = logging.getLogger(__name__)
S = RecipientState
MS = MessageStatus


@dataclass(frozen=True)
class SendOutcome:
    message_id: int
    provider_message_id: str | None = None
    error: ProviderError | None = None


@dataclass
class DispatchReport:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    waiting_until: float | None = None
    wait_reason: str | None = None
    more: bool = False
    outcomes: list[SendOutcome] = field(default_factory=list)


# Sent ---------------------------------------------------------------------------------------


def _campaign_flags(session: Session, campaign_ids: set[int]) -> dict[int, tuple[bool, int]]:
    rows = session.execute(
        select(Campaign.id, Campaign.message_2, Campaign.reply_window_seconds).where(
            Campaign.id.in_(campaign_ids)
        )
    )
    return {cid: (m2 is not None, window) for cid, m2, window in rows}


def _sent_message_1_before(
    session: Session, recipient_ids: Sequence[int], excluding: Sequence[int]
) -> set[int]:
    """Recipients already sent an earlier Message 1 (before a retry_failed).

    R2.3: ``message_1_sent`` counts contacts, not sends. A contact whose first Message 1 went
    out and who then failed (failed Message 2, late ``failed`` status) and was retried must
    not be counted twice, or the plan's ``finals >= message_1_sent`` never holds again.
    """
    if not recipient_ids:
        return set()
    return set(
        session.scalars(
            select(Message.recipient_id).where(
                Message.recipient_id.in_(recipient_ids),
                Message.kind == MessageKind.MESSAGE_1.value,
                Message.sent_at.is_not(None),
                Message.id.not_in(excluding),
            )
        )
    )


def mark_sent(
    session: Session,
    followups: Followups,
    settings: Settings,
    message_ids_and_provider_ids: Sequence[tuple[int, str | None]],
    now: datetime,
) -> int:
    """``sending -> sent`` by compare-and-set, and the recipient moves on (M1 -> awaiting_reply).

    Set-based: one UPDATE for the messages, one per campaign for their recipients, whatever the
    batch size (the dispatcher records up to a batch of sends in one transaction).
    """
    pairs = dict(message_ids_and_provider_ids)
    if not pairs:
        return 0
    provider_id = case({mid: pid for mid, pid in pairs.items()}, value=Message.id)
    rows = list(
        session.execute(
            update(Message)
            .where(Message.id.in_(pairs), Message.status == MS.SENDING.value)
            .values(
                status=MS.SENT.value,
                provider_message_id=provider_id,
                sent_at=now,
                error_code=None,
                error_text=None,
            )
            .returning(Message.id, Message.recipient_id, Message.campaign_id, Message.kind)
            .execution_options(synchronize_session=False)
        )
    )
    if not rows:
        return 0
    flags = _campaign_flags(session, {row.campaign_id for row in rows})
    first_ones = [row for row in rows if row.kind == MessageKind.MESSAGE_1]
    already_sent = _sent_message_1_before(
        session, [row.recipient_id for row in first_ones], [row.id for row in rows]
    )
    by_campaign: dict[int, list[int]] = {}
    for row in first_ones:
        by_campaign.setdefault(row.campaign_id, []).append(row.recipient_id)
        if row.recipient_id not in already_sent:
            counters.record(session, row.campaign_id, "message_1_sent", now)
    for campaign_id, recipient_ids in sorted(by_campaign.items()):
        has_m2, window = flags[campaign_id]
        target = recipient_state_after_message_1(has_m2)
        extra = {"window_closes_at": now + timedelta(seconds=window)} if has_m2 else {}
        repo.move_recipients(
            session, [Recipient.id.in_(recipient_ids)], S.QUEUED, target, now, **extra
        )
    second_ones = [row for row in rows if row.kind == MessageKind.MESSAGE_2]
    if second_ones:
        repo.move_recipients(
            session,
            [Recipient.id.in_([row.recipient_id for row in second_ones])],
            S.REPLIED,
            S.MESSAGE_2_SENT,
            now,
        )
    for row in second_ones:
        # R1.1 / R3.4 / P4: the plan's status check after every Message 2 send.
        after_commit_check(
            session, followups, row.campaign_id, settings.status_check_countdown_seconds
        )
    return len(rows)


# A send's answer ----------------------------------------------------------------------------


def backoff_seconds(attempt: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1))))


def record_outcomes(
    session: Session,
    settings: Settings,
    followups: Followups,
    outcomes: Sequence[SendOutcome],
    limiter: AnyLimiter | None = None,
    now: datetime | None = None,
) -> DispatchReport:
    """Write every provider answer of a batch in one transaction; counters once per campaign."""
    now = now or utcnow()
    report = DispatchReport(outcomes=list(outcomes))
    sent = [(o.message_id, o.provider_message_id) for o in outcomes if o.error is None]
    report.sent = mark_sent(session, followups, settings, sent, now)
    for outcome in outcomes:
        error = outcome.error
        if error is None:
            continue
        attempts = 0
        if not isinstance(error, PermanentError):
            attempts = (
                session.scalar(select(Message.attempts).where(Message.id == outcome.message_id))
                or 0
            )
        given_up = not isinstance(error, RateLimited) and attempts >= settings.max_attempts
        if isinstance(error, PermanentError) or given_up:
            text = f"{error.text} (gave up after {attempts} attempts)" if given_up else error.text
            report.failed += fail_messages(
                session,
                [outcome.message_id],
                error.code,
                text,
                now,
                followups=followups,
                settings=settings,
            )
            if isinstance(error, PermanentError) and error.stops_sender:
                _stop_campaign_of(session, outcome.message_id, error)
            continue
        _retry_later(session, outcome.message_id, error, attempts, now, limiter)
        report.retried += 1
    return report


def _retry_later(
    session: Session,
    message_id: int,
    error: ProviderError,
    attempts: int,
    now: datetime,
    limiter: AnyLimiter | None,
) -> None:
    """Back to ``pending`` with backoff; a rate limit blocks the whole sender too."""
    rate_limited = isinstance(error, RateLimited)
    if isinstance(error, RateLimited):
        retry_after = error.retry_after or backoff_seconds(attempts or 1)
        if limiter is not None:
            _block_after_commit(session, limiter, time.time() + retry_after)
    else:
        retry_after = backoff_seconds(attempts or 1)
    session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MS.SENDING.value)
        .values(
            status=MS.PENDING.value,
            next_attempt_at=now + timedelta(seconds=retry_after),
            error_code=error.code[:50],
            error_text=error.text,
            # A rate limit is the sender's pace, not this message's failure.
            attempts=Message.attempts - 1 if rate_limited else Message.attempts,
        )
        .execution_options(synchronize_session=False)
    )


def _block_after_commit(session: Session, limiter: AnyLimiter, until: float) -> None:
    """Block the sender once this transaction has committed, not inside it.

    On SQLite the database limiter needs the single write lock that this transaction holds:
    blocking from inside waited out busy_timeout, then failed the whole batch's recording
    (its messages left ``sending``). The message itself already waits ``retry_after``.
    """

    def block() -> None:
        try:
            limiter.block(until)
        except LimiterUnavailable as exc:  # fails closed anyway: the next reserve raises too
            log.warning("could not record a rate limit in the pacing store: %s", exc)

    on_commit(session, block)


def _stop_campaign_of(session: Session, message_id: int, error: ProviderError) -> None:
    """The provider refused the sender itself (a revoked token, a disabled number): a sender
    of its own stops (its campaigns' other numbers go on); the default one pauses the
    campaign, as before senders existed."""
    sender_id = session.scalar(select(Message.sender_id).where(Message.id == message_id))
    if sender_id is not None:
        set_state(session, sender_id, "stopped", f"the provider refused the sender: {error}")
        log.error(
            "sender stopped: the provider refused it",
            extra={"sender_id": sender_id, "error": str(error)},
        )
        return
    campaign_id = session.scalar(select(Message.campaign_id).where(Message.id == message_id))
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if campaign_id is not None and status == CampaignStatus.SENDING:
        pause_campaign(session, campaign_id, reason=f"provider refused the sender: {error}")
        log.error(
            "campaign paused: the provider refused the sender",
            extra={"campaign_id": campaign_id, "error": str(error)},
        )


# Provider statuses --------------------------------------------------------------------------


def apply_status(
    session: Session,
    settings: Settings,
    followups: Followups,
    message: Message,
    event: StatusEvent,
    now: datetime,
) -> Applied:
    """A provider status for one of our messages: forward only, never twice."""
    reported = MessageStatus(event.status)
    if message.status == MS.SENDING:
        # We died before recording the provider's answer: the status proves it was sent.
        mark_sent(session, followups, settings, [(message.id, event.provider_message_id)], now)
        session.refresh(message)
    while True:
        current = MS(message.status)
        target = next_message_status(current, reported)
        if target is None:
            detail = f"{reported.value} after {current.value}"
            return Applied(Outcome.IGNORED, message.recipient_id, detail)
        if target == MS.FAILED:
            fail_messages(
                session,
                [message.id],
                event.error_code or "failed",
                event.error_text or "reported failed",
                now,
                from_status=None,
                followups=followups,
                settings=settings,
            )
            return Applied(Outcome.FAILED, message.recipient_id)
        if _move_forward(session, message, current, target, now):
            return Applied(Outcome(target.value), message.recipient_id)
        # Our copy was stale: an earlier event of the same webhook batch (the session's
        # identity map keeps the row as first loaded) or another transaction moved it first.
        # Re-read and decide again; statuses only move forward, so this ends.
        session.refresh(message)


def _move_forward(
    session: Session, message: Message, current: MessageStatus, target: MessageStatus, now: datetime
) -> bool:
    """``current -> target`` by compare-and-set; counters only for the winner.

    Counting before the compare-and-set won lost the ``read`` of a [delivered, read] batch and
    counted ``delivered`` twice. ``delivered`` and ``read`` count contacts, like
    ``message_1_sent``: a Message 1 that retry-failed sent again counts only if no other one of
    the contact's did.
    """
    values: dict[str, object] = {"status": target.value}
    counted: list[str] = []
    # A read implies delivered, even when the delivered receipt is late or lost.
    if target in (MS.DELIVERED, MS.READ) and message.delivered_at is None:
        values["delivered_at"] = now
        counted.append("delivered")
    if target == MS.READ and message.read_at is None:
        values["read_at"] = now
        counted.append("read")
    result = session.execute(
        update(Message)
        .where(Message.id == message.id, Message.status == current.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    for key, value in values.items():  # keep our copy current for the batch's next event
        set_committed_value(message, key, value)
    if message.kind == MessageKind.MESSAGE_1:
        for counter in counted:
            if not _counted_for_another_message_1(session, message, counter):
                counters.record(session, message.campaign_id, counter, now)
    return True


def _counted_for_another_message_1(session: Session, message: Message, counter: str) -> bool:
    """Was another Message 1 of this contact (a retry-failed) delivered / read already?"""
    stamp = Message.delivered_at if counter == "delivered" else Message.read_at
    return (
        session.scalar(
            select(Message.id)
            .where(
                Message.recipient_id == message.recipient_id,
                Message.kind == MessageKind.MESSAGE_1.value,
                Message.id != message.id,
                stamp.is_not(None),
            )
            .limit(1)
        )
        is not None
    )
