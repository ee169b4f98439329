"""Claims: what is due to send, taken by one dispatcher only (``FOR UPDATE SKIP LOCKED``).

Due: a pending message whose time has come (Message 2s first, then Message 1s sent again), or
a queued recipient of a sending campaign whose Message 1 is not created yet: the claim creates
it, already ``sending``. ``has_due`` asks the same predicates without claiming.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from relance.campaigns.domain import CampaignStatus, MessageKind, MessageStatus, RecipientState
from relance.models import Campaign, Contact, Message, Recipient

PRIORITY = {MessageKind.MESSAGE_2: 0, MessageKind.MESSAGE_1: 1}
ANY_SENDER = -1  # claim for every sender (None is the default sender)
UNLIMITED = 1 << 30


@dataclass(frozen=True)
class SenderScope:
    """Whose messages a claim takes: one sender's (``ANY_SENDER``: all), with or without its
    Message 1s (a paused sender's Message 2s still go), and how many new Message 1s its
    messaging limit leaves room for."""

    sender_id: int | None = ANY_SENDER
    message_1: bool = True
    message_1_room: int = UNLIMITED

    def where(self, column: Any) -> list[Any]:
        return [] if self.sender_id == ANY_SENDER else [column == self.sender_id]


EVERY_SENDER = SenderScope()


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
    scope: SenderScope = EVERY_SENDER,
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
    ``recipient_ids`` restricts both steps to those recipients; ``scope`` to one sender.
    """
    campaigns = sending_campaign_ids(session)
    ids = _claim_pending(session, now, limit, campaigns, message_ids, recipient_ids, scope)
    room = scope.message_1_room
    if message_ids is None and scope.message_1:
        for campaign_id in campaigns:
            wanted = min(limit - len(ids), room)
            if wanted <= 0:
                break
            created = create_message_1(
                session, campaign_id, now, wanted, provider, recipient_ids, scope
            )
            room -= len(created)
            ids.extend(created)
    return sorted(ids)


def _claim_pending(
    session: Session,
    now: datetime,
    limit: int,
    campaigns: Sequence[int],
    message_ids: Sequence[int] | None,
    recipient_ids: Sequence[int] | None,
    scope: SenderScope,
) -> list[int]:
    ids: list[int] = []
    priorities = sorted(PRIORITY.values()) if scope.message_1 else [PRIORITY[MessageKind.MESSAGE_2]]
    for priority in priorities:
        for campaign_id in campaigns:
            if len(ids) >= limit:
                break
            query = (
                select(Message.id)
                .where(
                    Message.priority == priority,
                    Message.campaign_id == campaign_id,
                    *scope.where(Message.sender_id),
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
    scope: SenderScope = EVERY_SENDER,
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
        .where(
            Recipient.campaign_id == campaign_id,
            *scope.where(Recipient.sender_id),
            *message_1_due(),
        )
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
                "sender_id",
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
                Recipient.sender_id,
            )
            .where(Recipient.id.in_(stamped))
            .order_by(Recipient.id),
        )
        .returning(Message.id)
    )
    return list(created)


def release(session: Session, message_ids: Sequence[int], until: datetime) -> None:
    """Claimed messages the limiter will not let go yet: ``sending -> pending`` until then,
    no attempt counted (a Message 1 created by the claim stays, pending: its recipient is
    stamped, so no claim creates a second one)."""
    if not message_ids:
        return
    session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.status == MessageStatus.SENDING.value)
        .values(
            status=MessageStatus.PENDING.value,
            next_attempt_at=until,
            claimed_at=None,
            attempts=Message.attempts - 1,
        )
        .execution_options(synchronize_session=False)
    )


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
                Campaign.message_2_template,
                Campaign.placeholder_defaults,
                Recipient.replied_at,
            )
            .join(Recipient, Recipient.id == Message.recipient_id)
            .join(Contact, Contact.id == Recipient.contact_id)
            .join(Campaign, Campaign.id == Message.campaign_id)
            .where(Message.id.in_(message_ids))
        )
    )


def has_due(
    session: Session,
    now: datetime,
    message_ids: Sequence[int] | None = None,
    recipient_ids: Sequence[int] | None = None,
    scope: SenderScope = EVERY_SENDER,
) -> bool:
    """Is anything due in a sending campaign (the claim's predicates, nothing claimed)?"""
    query = _pending_due(now, message_ids, recipient_ids).where(*scope.where(Message.sender_id))
    if not scope.message_1:
        query = query.where(Message.priority == PRIORITY[MessageKind.MESSAGE_2])
    if session.scalar(query.with_only_columns(Message.id).limit(1)) is not None:
        return True
    if message_ids is not None or not scope.message_1:
        return False
    for campaign_id in sending_campaign_ids(session):
        waiting = _queued(campaign_id, recipient_ids).where(*scope.where(Recipient.sender_id))
        if session.scalar(waiting.with_only_columns(Recipient.id).limit(1)) is not None:
            return True
    return False


def _pending_due(
    now: datetime, message_ids: Sequence[int] | None, recipient_ids: Sequence[int] | None
) -> Any:
    query = (
        select(Message.id)
        .join(Campaign, Campaign.id == Message.campaign_id)
        .where(
            message_pending(),
            Campaign.status == CampaignStatus.SENDING.value,
            or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
        )
    )
    if message_ids is not None:
        query = query.where(Message.id.in_(message_ids))
    if recipient_ids is not None:
        query = query.where(Message.recipient_id.in_(recipient_ids))
    return query


def _queued(campaign_id: int, recipient_ids: Sequence[int] | None) -> Any:
    query = select(Recipient.id).where(Recipient.campaign_id == campaign_id, *message_1_due())
    if recipient_ids is not None:
        query = query.where(Recipient.id.in_(recipient_ids))
    return query


def due_senders(
    session: Session,
    now: datetime,
    message_ids: Sequence[int] | None = None,
    recipient_ids: Sequence[int] | None = None,
) -> set[int | None]:
    """The senders (None: the default) with something due, Message 1s and 2s alike.

    The queued recipients' senders are found by seeking the dispatcher's index once per
    sender (a loose index scan), never by reading the queue: a campaign of a million
    recipients over three numbers costs four index probes.
    """
    pending = _pending_due(now, message_ids, recipient_ids)
    found: set[int | None] = set(
        session.scalars(pending.with_only_columns(Message.sender_id).distinct())
    )
    if message_ids is not None:
        return found
    for campaign_id in sending_campaign_ids(session):
        queued = _queued(campaign_id, recipient_ids)
        if session.scalar(queued.where(Recipient.sender_id.is_(None)).limit(1)) is not None:
            found.add(None)
        last = 0
        while True:
            after = session.scalar(
                queued.with_only_columns(Recipient.sender_id)
                .where(Recipient.sender_id > last)
                .order_by(Recipient.sender_id)
                .limit(1)
            )
            if after is None:
                break
            found.add(after)
            last = after
    return found
