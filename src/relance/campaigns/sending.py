"""Sending: claim due messages, hand them to the provider, record what happened.

The provider call must sit between two commits: the claim (``pending -> sending``, or a queued
recipient's Message 1 created ``sending``) is durable before anything leaves, and the outcome
is recorded after. A worker killed in between leaves the message ``sending``, where recovery
finds it (never resends it blindly). So ``dispatch``
owns its transactions, like a task would; the functions that record take a session.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from relance.campaigns import repository as repo
from relance.campaigns.domain import (
    MessageKind,
    MessageStatus,
    RecipientState,
    next_message_status,
    recipient_state_after_message_1,
)
from relance.campaigns.followups import Followups, after_commit_check
from relance.campaigns.service import finish, pause_campaign
from relance.config import Settings
from relance.contacts.domain import contact_values, render
from relance.db import on_commit, session_scope
from relance.models import Campaign, Message, Recipient, utcnow
from relance.pacing.domain import Grant, Wait
from relance.pacing.limiter import AnyLimiter, LimiterUnavailable
from relance.providers.base import (
    OutboundMessage,
    PermanentError,
    Provider,
    ProviderError,
    RateLimited,
    RetryableError,
)

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


# Claim ------------------------------------------------------------------------------------------


def claim(
    settings: Settings,
    limit: int,
    message_ids: Sequence[int] | None = None,
    recipient_ids: Sequence[int] | None = None,
) -> list[OutboundMessage]:
    """Claim and load up to ``limit`` due messages in one short transaction.

    Due: a pending message whose time has come, or a queued recipient of a sending campaign
    whose Message 1 is created by this claim. ``message_ids`` restricts the claim to those
    pending messages; ``recipient_ids`` to those recipients' messages and Message 1s.
    """
    with session_scope(settings) as session:
        ids = repo.claim_messages(
            session,
            utcnow(),
            limit,
            message_ids,
            provider=settings.provider,
            recipient_ids=recipient_ids,
        )
        if not ids:
            return []
        return [_outbound(row) for row in repo.outbound_rows(session, ids)]


def _outbound(row: object) -> OutboundMessage:
    values = contact_values(row.first_name, row.last_name, row.attributes or {})  # type: ignore[attr-defined]
    defaults = row.placeholder_defaults or {}  # type: ignore[attr-defined]
    if row.kind == MessageKind.MESSAGE_2:  # type: ignore[attr-defined]
        text = render(row.message_2 or "", values, defaults)  # type: ignore[attr-defined]
        return OutboundMessage(row.id, row.phone, text, kind="message_2")  # type: ignore[attr-defined]
    template = row.message_1_template  # type: ignore[attr-defined]
    if template:
        params = [render(str(p), values, defaults) for p in template.get("parameters", [])]
        template = {**template, "parameters": params}
    text = render(row.message_1, values, defaults)  # type: ignore[attr-defined]
    return OutboundMessage(row.id, row.phone, text, template)  # type: ignore[attr-defined]


# Record -----------------------------------------------------------------------------------------


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
    deltas: repo.Deltas,
    from_status: MessageStatus = MS.SENDING,
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
            .where(Message.id.in_(pairs), Message.status == from_status.value)
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
            deltas.add(row.campaign_id, "message_1_sent")
    for campaign_id, recipient_ids in sorted(by_campaign.items()):
        has_m2, window = flags[campaign_id]
        target = recipient_state_after_message_1(has_m2)
        extra = {"window_closes_at": now + timedelta(seconds=window)} if has_m2 else {}
        repo.move_recipients(
            session, [Recipient.id.in_(recipient_ids)], S.QUEUED, target, now, deltas, **extra
        )
    second_ones = [row for row in rows if row.kind == MessageKind.MESSAGE_2]
    if second_ones:
        repo.move_recipients(
            session,
            [Recipient.id.in_([row.recipient_id for row in second_ones])],
            S.REPLIED,
            S.MESSAGE_2_SENT,
            now,
            deltas,
        )
    for row in second_ones:
        # R1.1 / R3.4 / P4: the plan's status check after every Message 2 send.
        after_commit_check(
            session, followups, row.campaign_id, settings.status_check_countdown_seconds
        )
    return len(rows)


def fail_messages(
    session: Session,
    message_ids: Sequence[int],
    code: str,
    text: str,
    now: datetime,
    deltas: repo.Deltas,
    from_status: MessageStatus | None = MS.SENDING,
    followups: Followups | None = None,
    settings: Settings | None = None,
) -> int:
    """Messages fail for good; their recipients end ``failed`` (E2: counted, checked)."""
    where = [Message.id.in_(message_ids), Message.status != MS.FAILED.value]
    if from_status is not None:
        where.append(Message.status == from_status.value)
    rows = list(
        session.execute(
            update(Message)
            .where(*where)
            .values(status=MS.FAILED.value, failed_at=now, error_code=code[:50], error_text=text)
            .returning(Message.recipient_id, Message.campaign_id, Message.kind)
            .execution_options(synchronize_session=False)
        )
    )
    for recipient_id, campaign_id, kind in rows:
        olds = (S.QUEUED, S.AWAITING_REPLY) if kind == MessageKind.MESSAGE_1 else (S.REPLIED,)
        for old in olds:
            repo.move_recipients(
                session,
                [Recipient.id == recipient_id],
                old,
                S.FAILED,
                now,
                deltas,
                last_error=f"{code}: {text}"[:1000],
            )
        if kind == MessageKind.MESSAGE_2 and followups is not None and settings is not None:
            after_commit_check(
                session, followups, campaign_id, settings.status_check_countdown_seconds
            )
    return len(rows)


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
    deltas = repo.Deltas()
    sent = [(o.message_id, o.provider_message_id) for o in outcomes if o.error is None]
    report.sent = mark_sent(session, followups, settings, sent, now, deltas)
    for outcome in outcomes:
        error = outcome.error
        if error is None:
            continue
        if isinstance(error, PermanentError):
            report.failed += fail_messages(
                session,
                [outcome.message_id],
                error.code,
                error.text,
                now,
                deltas,
                followups=followups,
                settings=settings,
            )
            if error.stops_sender:
                _stop_campaign_of(session, outcome.message_id, error)
            continue
        attempts = session.scalar(select(Message.attempts).where(Message.id == outcome.message_id))
        rate_limited = isinstance(error, RateLimited)
        if not isinstance(error, RateLimited) and (attempts or 0) >= settings.max_attempts:
            report.failed += fail_messages(
                session,
                [outcome.message_id],
                error.code,
                f"{error.text} (gave up after {attempts} attempts)",
                now,
                deltas,
                followups=followups,
                settings=settings,
            )
            continue
        if isinstance(error, RateLimited):
            retry_after = error.retry_after or backoff_seconds(attempts or 1)
            if limiter is not None:
                _block_after_commit(session, limiter, time.time() + retry_after)
        else:
            retry_after = backoff_seconds(attempts or 1)
        session.execute(
            update(Message)
            .where(Message.id == outcome.message_id, Message.status == MS.SENDING.value)
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
        report.retried += 1
    finish(session, deltas, now)
    return report


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
    campaign_id = session.scalar(select(Message.campaign_id).where(Message.id == message_id))
    status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
    if campaign_id is not None and status == "sending":
        pause_campaign(session, campaign_id, reason=f"provider refused the sender: {error}")
        log.error(
            "campaign paused: the provider refused the sender",
            extra={"campaign_id": campaign_id, "error": str(error)},
        )


def apply_status(
    session: Session,
    settings: Settings,
    followups: Followups,
    message: Message,
    reported: MessageStatus,
    provider_message_id: str,
    error_code: str | None,
    error_text: str | None,
    now: datetime,
    deltas: repo.Deltas,
) -> str:
    """A provider status for one of our messages: forward only, never twice."""
    if message.status == MS.SENDING:
        # We died before recording the provider's answer: the status proves it was sent.
        mark_sent(session, followups, settings, [(message.id, provider_message_id)], now, deltas)
        session.refresh(message)
    current = MS(message.status)
    target = next_message_status(current, reported)
    if target is None:
        return f"ignored ({reported.value} after {current.value})"
    if target == MS.FAILED:
        fail_messages(
            session,
            [message.id],
            error_code or "failed",
            error_text or "reported failed",
            now,
            deltas,
            from_status=None,
            followups=followups,
            settings=settings,
        )
        return "failed"
    values: dict[str, object] = {"status": target.value}
    counters: list[str] = []
    # A read implies delivered, even when the delivered receipt is late or lost.
    if target in (MS.DELIVERED, MS.READ) and message.delivered_at is None:
        values["delivered_at"] = now
        counters.append("delivered")
    if target == MS.READ and message.read_at is None:
        values["read_at"] = now
        counters.append("read")
    result = session.execute(
        update(Message)
        .where(Message.id == message.id, Message.status == current.value)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        # Our copy was stale: an earlier event of the same webhook batch (the session's
        # identity map keeps the row as first loaded) or another transaction moved it first.
        # Re-read and decide again; statuses only move forward, so this ends. Counting before
        # the compare-and-set won lost the ``read`` of a [delivered, read] batch and counted
        # ``delivered`` twice.
        session.refresh(message)
        return apply_status(
            session,
            settings,
            followups,
            message,
            reported,
            provider_message_id,
            error_code,
            error_text,
            now,
            deltas,
        )
    for key, value in values.items():  # keep our copy current for the batch's next event
        set_committed_value(message, key, value)
    if message.kind == MessageKind.MESSAGE_1:
        for counter in counters:
            deltas.add(message.campaign_id, counter)
    return target.value


# Dispatch ---------------------------------------------------------------------------------------


def send_all(provider: Provider, messages: Sequence[OutboundMessage]) -> list[SendOutcome]:
    """Hand each message to the provider once; never raise (errors become outcomes)."""

    def one(message: OutboundMessage) -> SendOutcome:
        try:
            result = provider.send(message)
            return SendOutcome(message.message_id, provider_message_id=result.provider_message_id)
        except ProviderError as exc:
            return SendOutcome(message.message_id, error=exc)
        except Exception as exc:  # a bug or a network oddity must not lose the claim
            log.exception("provider send crashed", extra={"message_id": message.message_id})
            return SendOutcome(message.message_id, error=RetryableError("exception", repr(exc)))

    if len(messages) <= 1:
        return [one(m) for m in messages]
    with ThreadPoolExecutor(max_workers=min(16, len(messages))) as pool:
        return list(pool.map(one, messages))


def dispatch(
    settings: Settings,
    provider: Provider,
    limiter: AnyLimiter,
    followups: Followups,
    budget_seconds: float = 20.0,
    batch: int = 100,
    message_ids: Sequence[int] | None = None,
    max_wait: float = 2.0,
    stopping: Callable[[], bool] = lambda: False,
    recipient_ids: Sequence[int] | None = None,
) -> DispatchReport:
    """Send due messages within what the shared limiter grants, for up to ``budget_seconds``.

    ``stopping`` is checked between batches: a worker asked to shut down finishes the batch
    it holds (claimed messages are recorded, never abandoned) and claims no more.
    ``message_ids`` and ``recipient_ids`` restrict what is due (see ``claim``).
    """
    deadline = time.monotonic() + budget_seconds
    total = DispatchReport()
    paced = not limiter.rules.unpaced
    while time.monotonic() < deadline and not stopping():
        # Paced, a reservation spends a slot: look first. Unpaced, the claim itself tells.
        if paced and not _has_due(settings, message_ids, recipient_ids):
            break
        try:
            decision = limiter.reserve(max_wait=max_wait, wanted=batch)
        except LimiterUnavailable as exc:
            log.warning("pacing store unavailable: not sending", extra={"error": str(exc)})
            total.wait_reason = "limiter_unavailable"
            total.more = True
            break
        if isinstance(decision, Wait):
            total.waiting_until, total.wait_reason = decision.until, decision.reason
            total.more = True
            break
        assert isinstance(decision, Grant)
        delay = decision.at - time.time()
        if delay > 0:
            time.sleep(delay)
        messages = claim(settings, decision.count, message_ids, recipient_ids)
        if len(messages) < decision.count and limiter.rules.unpaced:
            limiter.refund(decision.count - len(messages))
        if not messages:
            break
        outcomes = send_all(provider, messages)
        report = _record(settings, followups, outcomes, limiter)
        total.sent += report.sent
        total.failed += report.failed
        total.retried += report.retried
        total.outcomes.extend(outcomes)
    else:
        total.more = _has_due(settings, message_ids, recipient_ids)
    return total


def _record(
    settings: Settings, followups: Followups, outcomes: Sequence[SendOutcome], limiter: AnyLimiter
) -> DispatchReport:
    """Record a batch in one transaction; if that fails, each outcome alone.

    One bad row (say a provider id that collides) must not keep the rest of the batch in
    ``sending``; what still fails stays ``sending`` for recovery, and is logged.
    """
    for attempt in range(3):
        try:
            with session_scope(settings) as session:
                return record_outcomes(session, settings, followups, outcomes, limiter)
        except OperationalError:  # deadlock or lock timeout: the whole batch may go again
            log.warning("recording a batch conflicted; retrying", extra={"attempt": attempt})
        except Exception:
            log.exception("recording a batch failed; recording one by one")
            break
    total = DispatchReport(outcomes=list(outcomes))
    for outcome in outcomes:
        try:
            with session_scope(settings) as session:
                one = record_outcomes(session, settings, followups, [outcome], limiter)
            total.sent += one.sent
            total.failed += one.failed
            total.retried += one.retried
        except Exception:
            log.exception(
                "could not record a send outcome; recovery will see it",
                extra={"message_id": outcome.message_id},
            )
    return total


def _has_due(
    settings: Settings,
    message_ids: Sequence[int] | None,
    recipient_ids: Sequence[int] | None = None,
) -> bool:
    """Is anything due in a sending campaign: a pending message whose time has come, or (no
    ``message_ids`` given) a queued recipient whose Message 1 is still to be created?"""
    with session_scope(settings) as session:
        query = (
            select(Message.id)
            .join(Campaign, Campaign.id == Message.campaign_id)
            .where(
                repo.message_pending(),
                Campaign.status == "sending",
                (Message.next_attempt_at.is_(None)) | (Message.next_attempt_at <= utcnow()),
            )
            .limit(1)
        )
        if message_ids is not None:
            query = query.where(Message.id.in_(message_ids))
        if recipient_ids is not None:
            query = query.where(Message.recipient_id.in_(recipient_ids))
        if session.scalar(query) is not None:
            return True
        if message_ids is not None:
            return False
        for campaign_id in repo.sending_campaign_ids(session):
            waiting = (
                select(Recipient.id)
                .where(Recipient.campaign_id == campaign_id, *repo.message_1_due())
                .limit(1)
            )
            if recipient_ids is not None:
                waiting = waiting.where(Recipient.id.in_(recipient_ids))
            if session.scalar(waiting) is not None:
                return True
        return False
