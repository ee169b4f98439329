"""The campaign SQL that is neither a claim nor a counter: audience, fan-out, moves.

Every recipient transition is a compare-and-set on its state (``move_recipients``), checked
against the domain's transition table, and records its counter changes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Table, case, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from relance.campaigns import counters
from relance.campaigns.claims import PRIORITY
from relance.campaigns.domain import (
    OPEN_RECIPIENT_STATES,
    MessageKind,
    MessageStatus,
    RecipientState,
    can_transition,
)
from relance.models import (
    Contact,
    Message,
    Recipient,
    campaign_categories,
    campaign_contacts,
    contact_categories,
)
from relance.senders.domain import Share, bounds

OPEN_STATE_VALUES = tuple(sorted(s.value for s in OPEN_RECIPIENT_STATES))


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
    if _has_reachable_member(
        session, campaign_contacts, campaign_contacts.c.campaign_id, campaign_id
    ):
        return True
    categories = session.scalars(
        select(campaign_categories.c.category_id).where(
            campaign_categories.c.campaign_id == campaign_id
        )
    ).all()
    links = contact_categories
    return any(
        _has_reachable_member(session, links, links.c.category_id, category_id)
        for category_id in categories
    )


def _has_reachable_member(session: Session, links: Table, key: Any, value: int) -> bool:
    """Does a link table hold a contact that has not opted out under ``key == value``?"""
    member = (
        select(links.c.contact_id)
        .join(Contact, Contact.id == links.c.contact_id)
        .where(key == value, Contact.opted_out_at.is_(None))
        .limit(1)
    )
    return session.scalar(member) is not None


def _sender_column(shares: Sequence[Share]) -> Any:
    """Each recipient's sender, in the INSERT ... SELECT: ``senders.domain.sender_at`` of its
    position in contact id order (a window function, only when there are several senders)."""
    table = bounds(shares)
    if len(table) == 1:
        return literal(table[0][1], Integer)
    slot = (func.row_number().over(order_by=Contact.id) - 1) % table[-1][0]
    whens = [(slot < bound, literal(sender, Integer)) for bound, sender in table[:-1]]
    return case(*whens, else_=literal(table[-1][1], Integer))


def fan_out(
    session: Session, campaign_id: int, now: datetime, shares: Sequence[Share] = ((None, 1),)
) -> tuple[int, int]:
    """Create the recipients with one INSERT ... SELECT (no per-contact loop), each with its
    sender (``shares``: the campaign's senders and weights; None: the default sender).

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
        _sender_column(shares),
    ).where(audience, Contact.opted_out_at.is_(None))
    session.execute(
        insert(Recipient).from_select(
            ["campaign_id", "contact_id", "state", "queued_at", "sender_id"], reachable
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
        .returning(Recipient.id, Recipient.campaign_id, Recipient.contact_id, Recipient.sender_id)
        .execution_options(synchronize_session=False)
    )
    rows = list(result)
    for campaign_id, n in Counter(row.campaign_id for row in rows).items():
        counters.record_move(session, campaign_id, old, new, now, n)
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
                # Message 2 leaves from the number that sent Message 1: the reply came there.
                sender_id=select(Recipient.sender_id)
                .where(Recipient.id == recipient_id)
                .scalar_subquery(),
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
            .returning(Message.id)
        ).scalar_one()
    )


def fail_unsent_messages(
    session: Session, where: Iterable[Any], code: str, text: str, now: datetime
) -> None:
    """The matching ``pending`` messages will never go: ``failed`` with why (no recipient moves:
    the caller has moved them already, to ``opted_out`` or ``cancelled``)."""
    session.execute(
        update(Message)
        .where(Message.status == MessageStatus.PENDING.value, *where)
        .values(status=MessageStatus.FAILED.value, failed_at=now, error_code=code, error_text=text)
        .execution_options(synchronize_session=False)
    )
