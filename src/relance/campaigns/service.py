"""Campaign use cases. They flush, never commit: the request or task owns the transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.orm import Session

from relance.campaigns import repository as repo
from relance.campaigns import texts
from relance.campaigns.domain import (
    CampaignStatus,
    MessageKind,
    MessageStatus,
    RecipientState,
    status_after_check,
)
from relance.campaigns.followups import (
    Followups,
    after_commit_check,
    after_commit_dispatch,
    after_commit_send,
)
from relance.config import Settings
from relance.contacts.domain import contact_values, missing_placeholders, rendered_length
from relance.errors import Conflict, Invalid, not_found
from relance.models import Campaign, Contact, Message, Recipient, utcnow

log = logging.getLogger(__name__)
S = RecipientState
C = CampaignStatus
EMPTY_AUDIENCE = "the audience is empty once opted-out contacts are removed"


def get_campaign(session: Session, campaign_id: int, lock: bool = False) -> Campaign:
    query = select(Campaign).where(Campaign.id == campaign_id)
    if lock:
        query = query.with_for_update()
    campaign = session.scalars(query).one_or_none()
    if campaign is None:
        raise not_found("campaign", campaign_id)
    return campaign


# Launch ---------------------------------------------------------------------------------------


@dataclass
class _TooLong:
    """Recipients for whom one text is too long once personalised."""

    recipients: int = 0
    longest: int = 0
    first_contact: int | None = None

    def add(self, contact_id: int, length: int) -> None:
        self.recipients += 1
        self.longest = max(self.longest, length)
        if self.first_contact is None or contact_id < self.first_contact:
            self.first_contact = contact_id


def check_texts(session: Session, campaign: Campaign) -> None:
    """422 unless every recipient gets texts that parse, fill and fit WhatsApp's limits.

    The audience is read only when a placeholder lacks a default or when a text could
    exceed its limit with the longest values a contact may hold: a launch with neither
    reads no contact, whatever its audience's size.
    """
    template = campaign.message_1_template
    all_texts = texts.campaign_texts(campaign.message_1, campaign.message_2, template)
    problems = texts.form_problems(all_texts, template)
    if problems:
        raise Invalid(problems)
    defaults = campaign.placeholder_defaults or {}
    needed = set().union(*(missing_placeholders(t.text, {}) for t in all_texts)) - set(defaults)
    at_risk = texts.may_exceed(all_texts, defaults)
    if not needed and not at_risk:
        return  # nothing to look up: don't read the whole audience
    lacking: dict[str, int] = {}
    too_long = {t.field: _TooLong() for t in at_risk}
    rows = session.execute(
        select(Contact.id, Contact.first_name, Contact.last_name, Contact.attributes)
        .where(repo.audience_query(campaign.id), Contact.opted_out_at.is_(None))
        .execution_options(yield_per=1000)
    )
    for contact_id, first, last, attributes in rows:
        values = contact_values(first, last, attributes or {})
        for name in needed - set(values):
            lacking[name] = lacking.get(name, 0) + 1
        for text in at_risk:
            length = rendered_length(text.text, values, defaults)
            if length > text.limit:
                too_long[text.field].add(contact_id, length)
    if lacking:
        parts = ", ".join(
            f"{{{k}}} missing for {v} recipient(s)" for k, v in sorted(lacking.items())
        )
        raise Invalid(
            f"message placeholders without a value: {parts}; "
            "fill the contacts' attributes or give placeholder_defaults"
        )
    errors = [
        {
            "field": text.field,
            "msg": texts.too_long_message(
                text, seen.longest, seen.recipients, seen.first_contact or 0
            ),
        }
        for text in at_risk
        if (seen := too_long[text.field]).recipients
    ]
    if errors:
        raise Invalid(errors)


def check_launch(session: Session, campaign: Campaign) -> None:
    """What a launch needs, checked at launch and again when a scheduled campaign starts."""
    if not repo.has_reachable_contact(session, campaign.id):
        raise Invalid(EMPTY_AUDIENCE)
    check_texts(session, campaign)


def launch_campaign(
    session: Session,
    settings: Settings,
    followups: Followups,
    campaign_id: int,
    now: datetime | None = None,
) -> Campaign:
    """Start sending now, or schedule it when ``scheduled_at`` lies ahead (409/422 otherwise)."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in (C.DRAFT, C.SCHEDULED):
        raise Conflict(
            f"campaign {campaign_id} is {campaign.status}: only a draft or a "
            "scheduled campaign can be launched"
        )
    check_launch(session, campaign)
    if campaign.status == C.DRAFT and campaign.scheduled_at and campaign.scheduled_at > now:
        campaign.status = C.SCHEDULED.value
        session.flush()
        return campaign
    return start_sending(session, settings, followups, campaign, now)


def start_sending(
    session: Session, settings: Settings, followups: Followups, campaign: Campaign, now: datetime
) -> Campaign:
    inserted, skipped = repo.fan_out(session, campaign.id, now)
    if inserted == 0:
        # The audience emptied between the check and the fan-out (a contact opted out or was
        # deleted meanwhile): a campaign of no recipient would never complete.
        raise Invalid(EMPTY_AUDIENCE)
    campaign.status = C.SENDING.value
    campaign.started_at = now
    campaign.total = inserted
    campaign.n_queued = inserted
    campaign.skipped_opted_out = skipped
    session.flush()
    log.info(
        "campaign launched",
        extra={"campaign_id": campaign.id, "recipients": inserted, "skipped_opted_out": skipped},
    )
    after_commit_dispatch(session, followups)
    return campaign


def _reason(detail: Any) -> str:
    """One sentence out of an Invalid's detail (a text, or a list of ``{field, msg}``)."""
    if isinstance(detail, list):
        return "; ".join(str(item.get("msg", item)) for item in detail)
    return str(detail)


def start_due_scheduled(
    session: Session, settings: Settings, followups: Followups, now: datetime | None = None
) -> list[int]:
    """Scheduled campaigns whose time has come start sending, checked again like a launch.

    One that cannot start (its audience emptied, a contact's values make a text too long...)
    ends ``cancelled`` with the reason in ``status_reason``. Each campaign runs in its own
    savepoint, so one that fails leaves the others to start. Returns the started ids.
    """
    now = now or utcnow()
    due = session.scalars(
        select(Campaign)
        .where(Campaign.status == C.SCHEDULED.value, Campaign.scheduled_at <= now)
        .order_by(Campaign.id)
        .with_for_update(skip_locked=True)
    ).all()
    started = []
    for campaign in due:
        try:
            with session.begin_nested():
                check_launch(session, campaign)
                start_sending(session, settings, followups, campaign, now)
            started.append(campaign.id)
        except Invalid as exc:
            reason = f"not started at its scheduled time: {_reason(exc.detail)}"
            _cancel_unstarted(session, campaign, reason, now)
        except Exception:
            # Left scheduled: the next dispatcher run tries it again.
            log.exception("scheduled campaign failed to start", extra={"campaign_id": campaign.id})
    return started


def _cancel_unstarted(session: Session, campaign: Campaign, reason: str, now: datetime) -> None:
    session.refresh(campaign)  # the savepoint's rollback expired it
    campaign.status = C.CANCELLED.value
    campaign.status_reason = reason
    campaign.cancelled_at = now
    campaign.completed_at = now
    session.flush()
    log.warning(
        "scheduled campaign cancelled", extra={"campaign_id": campaign.id, "reason": reason}
    )


# Replies and opt-outs -------------------------------------------------------------------------


def _contact_by_phone(session: Session, phone: str) -> Contact | None:
    return session.scalars(select(Contact).where(Contact.phone == phone)).one_or_none()


def record_interaction(
    session: Session,
    settings: Settings,
    followups: Followups,
    phone: str,
    context_provider_message_id: str | None = None,
    now: datetime | None = None,
) -> tuple[str, int | None]:
    """A contact answered: ``awaiting_reply -> replied`` by compare-and-set, Message 2 queued.

    Returns (outcome, recipient id). A second reply, or one after the window closed, is
    recorded by the caller and changes nothing here.
    """
    now = now or utcnow()
    contact = _contact_by_phone(session, phone)
    if contact is None:
        return "unknown_contact", None
    recipient = _recipient_for_reply(session, contact.id, context_provider_message_id)
    if recipient is None:
        return "no_campaign_awaiting", None
    deltas = repo.Deltas()
    won = repo.move_recipients(
        session,
        [Recipient.id == recipient.id, Recipient.window_closes_at > now],
        S.AWAITING_REPLY,
        S.REPLIED,
        now,
        deltas,
    )
    if not won:
        current = session.scalar(select(Recipient.state).where(Recipient.id == recipient.id))
        outcome = "late_reply" if current == S.NO_INTERACTION else "already_answered"
        if current == S.AWAITING_REPLY:
            outcome = "late_reply"  # the window closed; the sweep will record no_interaction
        return outcome, recipient.id
    deltas.add(recipient.campaign_id, "interactions")
    repo.apply_deltas(session, deltas)
    message_id = repo.insert_message_2(
        session, recipient.id, recipient.campaign_id, settings.provider, now
    )
    after_commit_send(session, followups, message_id)
    return "message_2_queued", recipient.id


def _recipient_for_reply(
    session: Session, contact_id: int, context_provider_message_id: str | None
) -> Recipient | None:
    """The recipient a reply belongs to: the quoted message's, else the latest open window."""
    if context_provider_message_id:
        quoted = session.scalars(
            select(Recipient)
            .join(Message, Message.recipient_id == Recipient.id)
            .where(
                Message.provider_message_id == context_provider_message_id,
                Recipient.contact_id == contact_id,
            )
        ).first()
        if quoted is not None:
            return quoted
    latest = session.scalars(
        select(Recipient)
        .where(Recipient.contact_id == contact_id)
        .order_by(
            (Recipient.state == S.AWAITING_REPLY.value).desc(),
            Recipient.awaiting_reply_at.desc().nulls_last(),
            Recipient.id.desc(),
        )
        .limit(1)
    ).first()
    return latest


def opt_out(session: Session, phone: str, now: datetime | None = None) -> tuple[str, list[int]]:
    """A stop keyword: the contact opts out, its open recipients end ``opted_out``."""
    now = now or utcnow()
    contact = _contact_by_phone(session, phone)
    if contact is None:
        return "unknown_contact", []
    if contact.opted_out_at is None:
        contact.opted_out_at = now
    deltas = repo.Deltas()
    moved: list[int] = []
    for state in (S.QUEUED, S.AWAITING_REPLY, S.REPLIED):
        rows = repo.move_recipients(
            session, [Recipient.contact_id == contact.id], state, S.OPTED_OUT, now, deltas
        )
        moved.extend(r.id for r in rows)
    if moved:
        # Their unsent messages must never go out now.
        session.execute(
            update(Message)
            .where(
                Message.recipient_id.in_(moved),
                Message.status == MessageStatus.PENDING.value,
            )
            .values(
                status=MessageStatus.FAILED.value,
                failed_at=now,
                error_code="opted_out",
                error_text="the contact opted out",
            )
            .execution_options(synchronize_session=False)
        )
    finish(session, deltas, now)
    return "opted_out", moved


def finish(session: Session, deltas: repo.Deltas, now: datetime) -> list[int]:
    """Apply the counters, then complete every touched campaign that has nothing open."""
    repo.apply_deltas(session, deltas)
    return [cid for cid in deltas.campaigns() if repo.try_complete(session, cid, now)]


# Windows, status checks, reconciliation ------------------------------------------------------


def expire_windows(session: Session, now: datetime | None = None, limit: int = 5000) -> int:
    """Every recipient whose window closed becomes ``no_interaction`` (E3), in bounded batches.

    The compare-and-set on ``awaiting_reply`` makes a racing reply and this sweep give exactly
    one outcome.
    """
    now = now or utcnow()
    candidates = (
        select(Recipient.id)
        .where(Recipient.state == S.AWAITING_REPLY.value, Recipient.window_closes_at <= now)
        .order_by(Recipient.window_closes_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(candidates))
    if not ids:
        return 0
    deltas = repo.Deltas()
    rows = repo.move_recipients(
        session, [Recipient.id.in_(ids)], S.AWAITING_REPLY, S.NO_INTERACTION, now, deltas
    )
    finish(session, deltas, now)
    return len(rows)


def update_campaign_status(session: Session, campaign_id: int, now: datetime | None = None) -> str:
    """The plan's status check: one row read, constant time at any campaign size (R1.2-R1.4)."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id)
    target = status_after_check(C(campaign.status), repo.counts_of(campaign))
    if target == C.COMPLETED and repo.try_complete(session, campaign_id, now):
        return C.COMPLETED.value
    return campaign.status


def reconcile_counters(session: Session, campaign_id: int) -> dict[str, tuple[int, int]]:
    """Recompute the counters from the rows; repair and log any drift. Returns the drift."""
    campaign = get_campaign(session, campaign_id, lock=True)  # holds counter writers back
    truth = repo.recount(session, campaign_id)
    stored = repo.counter_values(campaign)
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


# Lifecycle actions ------------------------------------------------------------------------------


def pause_campaign(session: Session, campaign_id: int, reason: str | None = None) -> Campaign:
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status != C.SENDING:
        raise Conflict(
            f"campaign {campaign_id} is {campaign.status}: only a sending campaign can be paused"
        )
    campaign.status = C.PAUSED.value
    campaign.paused_at = utcnow()
    campaign.status_reason = reason
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
    session.flush()
    after_commit_dispatch(session, followups)
    return campaign


def cancel_campaign(session: Session, campaign_id: int, now: datetime | None = None) -> Campaign:
    """Remaining recipients become ``cancelled`` and their unsent messages never go."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status in (C.COMPLETED, C.CANCELLED):
        raise Conflict(f"campaign {campaign_id} is already {campaign.status}")
    deltas = repo.Deltas()
    for state in (S.QUEUED, S.AWAITING_REPLY, S.REPLIED):
        repo.move_recipients(
            session, [Recipient.campaign_id == campaign_id], state, S.CANCELLED, now, deltas
        )
    session.execute(
        update(Message)
        .where(Message.campaign_id == campaign_id, Message.status == MessageStatus.PENDING.value)
        .values(
            status=MessageStatus.FAILED.value,
            failed_at=now,
            error_code="cancelled",
            error_text="the campaign was cancelled",
        )
        .execution_options(synchronize_session=False)
    )
    repo.apply_deltas(session, deltas)
    session.refresh(campaign)
    campaign.status = C.CANCELLED.value
    campaign.cancelled_at = now
    campaign.completed_at = now
    session.flush()
    return campaign


def retry_failed(
    session: Session,
    settings: Settings,
    followups: Followups,
    campaign_id: int,
    now: datetime | None = None,
) -> int:
    """Failed recipients get a new Message 1 attempt; the campaign goes back to ``sending``.

    The new Message 1 rows are created here, pending: the dispatcher sends them like any
    retry. The recipients keep their ``message_1_created_at`` (stamped when their first
    Message 1 was created), so no claim creates another one for them.
    """
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id, lock=True)
    if campaign.status not in (C.SENDING, C.PAUSED, C.COMPLETED):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}: nothing to retry")
    deltas = repo.Deltas()
    rows = repo.move_recipients(
        session,
        # A deleted contact's recipient (anonymised) has no one left to send to.
        [Recipient.campaign_id == campaign_id, Recipient.contact_id.is_not(None)],
        S.FAILED,
        S.QUEUED,
        now,
        deltas,
        last_error=None,
        window_closes_at=None,
        message_1_created_at=func.coalesce(
            Recipient.message_1_created_at, literal(now, Recipient.message_1_created_at.type)
        ),
    )
    if not rows:
        raise Conflict(
            f"campaign {campaign_id} has no failed recipient to retry "
            "(those of deleted contacts are not retried)"
        )
    for row in rows:
        session.add(
            Message(
                recipient_id=row.id,
                campaign_id=campaign_id,
                kind=MessageKind.MESSAGE_1.value,
                priority=repo.PRIORITY[MessageKind.MESSAGE_1],
                status=MessageStatus.PENDING.value,
                provider=settings.provider,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
    repo.apply_deltas(session, deltas)
    session.refresh(campaign)
    if campaign.status == C.COMPLETED:
        campaign.status = C.SENDING.value
        campaign.completed_at = None
    session.flush()
    after_commit_dispatch(session, followups)
    return len(rows)


def recover_interrupted(
    session: Session, settings: Settings, now: datetime | None = None, limit: int = 1000
) -> dict[str, int]:
    """Messages left ``sending`` by a dead worker, once the grace period is over.

    The provider may have sent them: a status webhook matched by our id moves them on during
    the grace period. After it, ``UNKNOWN_OUTCOME_POLICY`` decides: ``fail`` (never risk a
    duplicate) or ``resend``.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.sending_grace_seconds)
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
    if settings.unknown_outcome_policy == "resend":
        session.execute(
            update(Message)
            .where(Message.id.in_(stuck), Message.status == MessageStatus.SENDING.value)
            .values(status=MessageStatus.PENDING.value, next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
        log.warning("requeued messages of unknown outcome", extra={"messages": len(stuck)})
        return {"failed": 0, "requeued": len(stuck)}
    from relance.campaigns.sending import fail_messages

    deltas = repo.Deltas()
    fail_messages(
        session,
        stuck,
        "outcome_unknown",
        "the worker stopped while sending and no provider status arrived",
        now,
        deltas,
        from_status=MessageStatus.SENDING,
    )
    finish(session, deltas, now)
    log.warning("failed messages of unknown outcome", extra={"messages": len(stuck)})
    return {"failed": len(stuck), "requeued": 0}


# Reads -----------------------------------------------------------------------------------------


def campaign_stats(campaign: Campaign) -> dict[str, Any]:
    """SPEC section 5 fields, read from the O(1) counters."""
    counts = repo.counts_of(campaign)
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
        "opted_out": counts.opted_out,
        "cancelled": counts.cancelled,
        "done": counts.done,
        "skipped_opted_out": campaign.skipped_opted_out,
        "finished": counts.finished,
        "completed": campaign.status == C.COMPLETED,
        "completed_at": campaign.completed_at,
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
            or_(*(Recipient.state == s for s in repo.OPEN_STATE_VALUES)),
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
