"""The campaign SQL: set-based fan-out, compare-and-set transitions, O(1) counters, claims."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from relance.campaigns.domain import (
    OPEN_RECIPIENT_STATES,
    CampaignCounts,
    CampaignStatus,
    MessageKind,
    MessageStatus,
    RecipientState,
    can_transition,
)
from relance.models import (
    Campaign,
    Contact,
    Message,
    Recipient,
    campaign_categories,
    campaign_contacts,
    contact_categories,
)

log = logging.getLogger(__name__)

STATE_COUNTERS = {state: f"n_{state.value}" for state in RecipientState}
MESSAGE_COUNTERS = ("message_1_sent", "delivered", "read", "interactions")
OPEN_STATE_VALUES = tuple(s.value for s in OPEN_RECIPIENT_STATES)
PRIORITY = {MessageKind.MESSAGE_2: 0, MessageKind.MESSAGE_1: 1}


class Deltas:
    """Counter changes gathered during one transaction, applied once per campaign."""

    def __init__(self) -> None:
        self.by_campaign: dict[int, Counter[str]] = {}

    def moved(self, campaign_id: int, old: RecipientState, new: RecipientState, n: int = 1) -> None:
        c = self.by_campaign.setdefault(campaign_id, Counter())
        c[STATE_COUNTERS[old]] -= n
        c[STATE_COUNTERS[new]] += n

    def add(self, campaign_id: int, counter: str, n: int = 1) -> None:
        self.by_campaign.setdefault(campaign_id, Counter())[counter] += n

    def campaigns(self) -> list[int]:
        return sorted(self.by_campaign)


def apply_deltas(session: Session, deltas: Deltas) -> None:
    # Campaigns in id order: two transactions touching the same rows lock them in one order.
    for campaign_id in deltas.campaigns():
        changes = {k: v for k, v in deltas.by_campaign[campaign_id].items() if v}
        if changes:
            cols = Campaign.__table__.c
            session.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values({name: cols[name] + delta for name, delta in changes.items()})
                .execution_options(synchronize_session=False)
            )


def open_recipients_expr() -> Any:
    c = Campaign.__table__.c
    return c.n_queued + c.n_awaiting_reply + c.n_replied


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
    out["delivered"] = (
        session.scalar(select(func.count()).where(m1, Message.delivered_at.is_not(None))) or 0
    )
    out["read"] = session.scalar(select(func.count()).where(m1, Message.read_at.is_not(None))) or 0
    out["interactions"] = (
        session.scalar(
            select(func.count()).where(
                Recipient.campaign_id == campaign_id, Recipient.replied_at.is_not(None)
            )
        )
        or 0
    )
    out["total"] = sum(out[name] for name in STATE_COUNTERS.values())
    return out


def audience_query(campaign_id: int) -> Any:
    """Contact ids of a campaign's audience, each once, opted-out ones included."""
    in_categories = select(contact_categories.c.contact_id).where(
        contact_categories.c.category_id.in_(
            select(campaign_categories.c.category_id).where(
                campaign_categories.c.campaign_id == campaign_id
            )
        )
    )
    listed = select(campaign_contacts.c.contact_id).where(
        campaign_contacts.c.campaign_id == campaign_id
    )
    return or_(Contact.id.in_(in_categories), Contact.id.in_(listed))


def has_reachable_contact(session: Session, campaign_id: int) -> bool:
    """Does the audience hold a contact that has not opted out? Stops at the first one.

    Asked of ``audience_query`` (an OR of two IN subqueries), PostgreSQL hashed the whole
    membership of the campaign's categories first: 0.3 s of a launch at 1,000,000 contacts.
    One category at a time, each lookup is a scan of that category that ends at a match.
    """
    reachable = Contact.opted_out_at.is_(None)
    listed = (
        select(campaign_contacts.c.contact_id)
        .join(Contact, Contact.id == campaign_contacts.c.contact_id)
        .where(campaign_contacts.c.campaign_id == campaign_id, reachable)
        .limit(1)
    )
    if session.scalar(listed) is not None:
        return True
    categories = session.scalars(
        select(campaign_categories.c.category_id).where(
            campaign_categories.c.campaign_id == campaign_id
        )
    ).all()
    for category_id in categories:
        member = (
            select(contact_categories.c.contact_id)
            .join(Contact, Contact.id == contact_categories.c.contact_id)
            .where(contact_categories.c.category_id == category_id, reachable)
            .limit(1)
        )
        if session.scalar(member) is not None:
            return True
    return False


def fan_out(session: Session, campaign_id: int, now: datetime) -> tuple[int, int]:
    """Create the recipients with one INSERT ... SELECT (no per-contact loop).

    No message row: each queued recipient waits in ``ix_recipients_message_1_due`` until a
    dispatcher claims it and creates its Message 1 (``claim_messages``), which halves the
    rows and index entries a launch writes.
    """
    audience = audience_query(campaign_id)
    reachable = select(
        literal(campaign_id, Recipient.campaign_id.type),
        Contact.id,
        literal(RecipientState.QUEUED.value, Recipient.state.type),
        literal(now, Recipient.queued_at.type),
    ).where(audience, Contact.opted_out_at.is_(None))
    session.execute(
        insert(Recipient).from_select(
            ["campaign_id", "contact_id", "state", "queued_at"], reachable
        )
    )
    # Counted, not taken from rowcount: psycopg reports -1 for INSERT ... SELECT here.
    inserted = (
        session.scalar(
            select(func.count()).select_from(Recipient).where(Recipient.campaign_id == campaign_id)
        )
        or 0
    )
    skipped = (
        session.scalar(
            select(func.count())
            .select_from(Contact)
            .where(audience, Contact.opted_out_at.is_not(None))
        )
        or 0
    )
    return inserted, skipped


def move_recipients(
    session: Session,
    where: Iterable[Any],
    old: RecipientState,
    new: RecipientState,
    now: datetime,
    deltas: Deltas,
    **values: Any,
) -> list[Any]:
    """Compare-and-set ``old -> new`` on the matching recipients; counters follow the winners."""
    if not can_transition(old, new):  # the SQL may only take the domain's transitions
        raise ValueError(f"recipients cannot go from {old} to {new}")
    stamp = f"{new.value}_at"
    result = session.execute(
        update(Recipient)
        .where(Recipient.state == old.value, *where)
        .values(state=new.value, **{stamp: now}, **values)
        .returning(Recipient.id, Recipient.campaign_id, Recipient.contact_id)
        .execution_options(synchronize_session=False)
    )
    rows = list(result)
    per_campaign = Counter(row.campaign_id for row in rows)
    for campaign_id, n in per_campaign.items():
        deltas.moved(campaign_id, old, new, n)
    return rows


def insert_message_2(
    session: Session, recipient_id: int, campaign_id: int, provider: str, now: datetime
) -> int:
    return int(
        session.execute(
            insert(Message)
            .values(
                recipient_id=recipient_id,
                campaign_id=campaign_id,
                kind=MessageKind.MESSAGE_2.value,
                priority=PRIORITY[MessageKind.MESSAGE_2],
                status=MessageStatus.PENDING.value,
                provider=provider,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
            .returning(Message.id)
        ).scalar_one()
    )


def sending_campaign_ids(session: Session) -> list[int]:
    return list(
        session.scalars(
            select(Campaign.id)
            .where(Campaign.status == CampaignStatus.SENDING.value)
            .order_by(Campaign.started_at, Campaign.id)
        )
    )


def message_1_due() -> list[Any]:
    """Queued recipients without a Message 1 row: the predicate of ``ix_recipients_message_1_due``.

    Rendered as literals, not bound parameters: a generic plan (PostgreSQL's, once psycopg has
    prepared a statement run often) could not prove that the partial index applies.
    """
    return [
        Recipient.state == literal(RecipientState.QUEUED.value, literal_execute=True),
        Recipient.message_1_created_at.is_(None),
    ]


def message_pending() -> Any:
    """``status = 'pending'``, the predicate of ``ix_messages_dispatch``, as a literal (see
    ``message_1_due``): bound, a generic plan scanned the whole messages table on each claim."""
    return Message.status == literal(MessageStatus.PENDING.value, literal_execute=True)


def claim_messages(
    session: Session,
    now: datetime,
    limit: int,
    message_ids: Sequence[int] | None = None,
    *,
    provider: str,
    recipient_ids: Sequence[int] | None = None,
) -> list[int]:
    """Claim up to ``limit`` due messages, all ``sending`` when this transaction commits.

    First the pending messages, ``pending -> sending`` by compare-and-set: Message 2s (a
    contact who answered is waiting), then Message 1s sent again (a retry, ``retry_failed``),
    in campaign launch order. Then, while room is left, each sending campaign's queued
    recipients that have no Message 1 row yet, in launch order then id order: their Message 1
    is created here, directly ``sending`` (``create_message_1``).

    One query per (priority, campaign): each is an ordered scan of a partial index, whatever
    the planner's statistics say (right after a launch of a million rows it has none, and a
    single query over every campaign sorted them all on each claim). On PostgreSQL,
    ``FOR UPDATE SKIP LOCKED`` lets several dispatchers claim side by side without waiting on
    each other or claiming the same row; SQLite has one writer at a time, so the
    compare-and-set alone is enough there.

    ``message_ids`` restricts the claim to those messages (no Message 1 is created then);
    ``recipient_ids`` restricts both steps to those recipients.
    """
    campaigns = sending_campaign_ids(session)
    ids = _claim_pending(session, now, limit, campaigns, message_ids, recipient_ids)
    if message_ids is None:
        for campaign_id in campaigns:
            if len(ids) >= limit:
                break
            ids.extend(
                create_message_1(
                    session, campaign_id, now, limit - len(ids), provider, recipient_ids
                )
            )
    return sorted(ids)


def _claim_pending(
    session: Session,
    now: datetime,
    limit: int,
    campaigns: Sequence[int],
    message_ids: Sequence[int] | None,
    recipient_ids: Sequence[int] | None,
) -> list[int]:
    ids: list[int] = []
    for priority in sorted(PRIORITY.values()):
        for campaign_id in campaigns:
            if len(ids) >= limit:
                break
            query = (
                select(Message.id)
                .where(
                    Message.priority == priority,
                    Message.campaign_id == campaign_id,
                    message_pending(),
                    or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
                )
                .order_by(Message.id)
                .limit(limit - len(ids))
                .with_for_update(skip_locked=True)
            )
            if message_ids is not None:
                query = query.where(Message.id.in_(message_ids))
            if recipient_ids is not None:
                query = query.where(Message.recipient_id.in_(recipient_ids))
            ids.extend(session.scalars(query))
    if not ids:
        return []
    claimed = session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.status == MessageStatus.PENDING.value)
        .values(status=MessageStatus.SENDING.value, claimed_at=now, attempts=Message.attempts + 1)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    )
    return list(claimed.scalars())


def create_message_1(
    session: Session,
    campaign_id: int,
    now: datetime,
    limit: int,
    provider: str,
    recipient_ids: Sequence[int] | None = None,
) -> list[int]:
    """Create the Message 1 of up to ``limit`` queued recipients, claimed: ``sending``.

    The recipients are locked (``SKIP LOCKED``: another dispatcher's are left to it), stamped
    ``message_1_created_at`` by compare-and-set on NULL, and only the ones stamped here get a
    row: a recipient never has two Message 1s from the dispatcher, whoever races. The rows are
    born ``sending`` in the claim's transaction, so a worker that dies after it leaves them
    exactly where a claimed pending message would be (recovery finds them).
    """
    query = (
        select(Recipient.id)
        .where(Recipient.campaign_id == campaign_id, *message_1_due())
        .order_by(Recipient.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if recipient_ids is not None:
        query = query.where(Recipient.id.in_(recipient_ids))
    picked = list(session.scalars(query))
    if not picked:
        return []
    # The compare-and-set is on the stamp alone: the rows are locked, still queued. Repeating
    # the partial index's predicate here let the planner scan that index for these ids (the
    # whole queue: they are not its first column) instead of the primary key.
    stamped = list(
        session.scalars(
            update(Recipient)
            .where(Recipient.id.in_(picked), Recipient.message_1_created_at.is_(None))
            .values(message_1_created_at=now)
            .returning(Recipient.id)
            .execution_options(synchronize_session=False)
        )
    )
    if not stamped:
        return []
    created = session.scalars(
        insert(Message)
        .from_select(
            [
                "recipient_id",
                "campaign_id",
                "kind",
                "priority",
                "status",
                "provider",
                "attempts",
                "created_at",
                "next_attempt_at",
                "claimed_at",
            ],
            select(
                Recipient.id,
                Recipient.campaign_id,
                literal(MessageKind.MESSAGE_1.value, Message.kind.type),
                literal(PRIORITY[MessageKind.MESSAGE_1], Message.priority.type),
                literal(MessageStatus.SENDING.value, Message.status.type),
                literal(provider, Message.provider.type),
                literal(1, Message.attempts.type),
                literal(now, Message.created_at.type),
                literal(now, Message.next_attempt_at.type),
                literal(now, Message.claimed_at.type),
            )
            .where(Recipient.id.in_(stamped))
            .order_by(Recipient.id),
        )
        .returning(Message.id)
    )
    return list(created)


def outbound_rows(session: Session, message_ids: Sequence[int]) -> list[Row[Any]]:
    """What the provider needs for each claimed message, in one query."""
    return list(
        session.execute(
            select(
                Message.id,
                Message.kind,
                Contact.phone,
                Contact.first_name,
                Contact.last_name,
                Contact.attributes,
                Campaign.message_1,
                Campaign.message_1_template,
                Campaign.message_2,
                Campaign.placeholder_defaults,
            )
            .join(Recipient, Recipient.id == Message.recipient_id)
            .join(Contact, Contact.id == Recipient.contact_id)
            .join(Campaign, Campaign.id == Message.campaign_id)
            .where(Message.id.in_(message_ids))
        )
    )


def counter_values(campaign: Campaign) -> Mapping[str, int]:
    names = [*STATE_COUNTERS.values(), *MESSAGE_COUNTERS, "total"]
    return {name: int(getattr(campaign, name)) for name in names}
