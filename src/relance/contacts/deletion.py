"""The SQL of deleting contacts and categories: what holds them back, what is erased.

A launch reads its audience from the campaign's category and contact lists: deleting what
they name would change (or empty) the audience of a campaign that has not started yet. A
contact's finished campaigns keep its recipients, anonymised (right to erasure).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from relance.campaigns.domain import OPEN_RECIPIENT_STATES, CampaignStatus
from relance.contacts.repository import MAX_BIND_PARAMS, chunks
from relance.models import (
    Campaign,
    Category,
    Contact,
    InboundEvent,
    Message,
    Recipient,
    campaign_categories,
    campaign_contacts,
)

NOT_STARTED = (CampaignStatus.DRAFT.value, CampaignStatus.SCHEDULED.value)
# What an erased text says where a phone number was.
ERASED = "[erased]"
ERASED_PAYLOAD: dict[str, Any] = {"erased": True}


def lock_contact(session: Session, contact_id: int) -> Contact | None:
    """The contact, locked until the transaction ends.

    A launch that is adding the contact to a campaign holds a key-share lock on it (its
    recipients' foreign key): this waits for that launch, whose recipient the checks then see.
    """
    return session.scalars(
        select(Contact).where(Contact.id == contact_id).with_for_update()
    ).one_or_none()


def lock_category(session: Session, category_id: int) -> Category | None:
    """The category, locked until the transaction ends (see ``lock_contact``)."""
    return session.scalars(
        select(Category).where(Category.id == category_id).with_for_update()
    ).one_or_none()


def not_started_campaigns_listing(session: Session, contact_id: int) -> list[tuple[int, str]]:
    """(id, name) of the draft or scheduled campaigns that list the contact by id."""
    return _not_started_naming(session, campaign_contacts.c.contact_id, contact_id)


def not_started_campaigns_using(session: Session, category_id: int) -> list[tuple[int, str]]:
    """(id, name) of the draft or scheduled campaigns whose audience has the category."""
    return _not_started_naming(session, campaign_categories.c.category_id, category_id)


def _not_started_naming(session: Session, column: Any, value: int) -> list[tuple[int, str]]:
    """(id, name) of the draft or scheduled campaigns whose list (``column``) names ``value``."""
    stmt = (
        select(Campaign.id, Campaign.name)
        .join(column.table, column.table.c.campaign_id == Campaign.id)
        .where(column == value, Campaign.status.in_(NOT_STARTED))
        .order_by(Campaign.id)
    )
    return [(campaign_id, name) for campaign_id, name in session.execute(stmt)]


def erase_traces_of(session: Session, contact_id: int, phone: str) -> None:
    """Erase what the campaigns keep about the contact beyond its id, before it is deleted.

    Its recipients and their messages stay (states and times: the campaigns' numbers), but
    the webhook payloads stored about them are replaced, and its number is cut out of the
    provider error texts that quote it. Deleting the contact then nulls their contact_id.
    """
    recipient_ids = list(
        session.scalars(select(Recipient.id).where(Recipient.contact_id == contact_id))
    )
    if not recipient_ids:
        return
    message_ids = list(
        session.scalars(select(Message.id).where(Message.recipient_id.in_(recipient_ids)))
    )
    # Two statements by id rather than one OR: each is an index lookup on its own column.
    for column, ids in (
        (InboundEvent.recipient_id, recipient_ids),
        (InboundEvent.message_id, message_ids),
    ):
        for part in chunks(ids, MAX_BIND_PARAMS):
            session.execute(
                update(InboundEvent)
                .where(column.in_(part))
                .values(payload=ERASED_PAYLOAD)
                .execution_options(synchronize_session=False)
            )
    digits = phone.lstrip("+")  # "+33612345678", "whatsapp:+33612345678" and "33612345678"
    for part in chunks(recipient_ids, MAX_BIND_PARAMS):
        session.execute(
            update(Message)
            .where(Message.recipient_id.in_(part), Message.error_text.contains(digits))
            .values(error_text=func.replace(Message.error_text, digits, ERASED))
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(Recipient)
            .where(Recipient.id.in_(part), Recipient.last_error.contains(digits))
            .values(last_error=func.replace(Recipient.last_error, digits, ERASED))
            .execution_options(synchronize_session=False)
        )
        # What the contact wrote is theirs: the answer's kind stays countable, not its words.
        session.execute(
            update(Recipient)
            .where(Recipient.id.in_(part), Recipient.reply_text.is_not(None))
            .values(reply_text=ERASED)
            .execution_options(synchronize_session=False)
        )


def open_campaigns_of(session: Session, contact_id: int) -> list[int]:
    """Campaigns in which the contact has not reached a final state yet."""
    stmt = (
        select(Recipient.campaign_id)
        .where(
            Recipient.contact_id == contact_id,
            Recipient.state.in_([s.value for s in OPEN_RECIPIENT_STATES]),
        )
        .order_by(Recipient.campaign_id)
    )
    return list(session.scalars(stmt))
