"""A contact's consent to marketing: opting out or back in, and where each change came from."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.campaigns.domain import OptSource
from relance.contacts import suppression
from relance.db import among
from relance.models import Contact, ContactOptChange, SuppressedPhone

MAX_HISTORY = 50


def record_opt_change(
    session: Session, contact: Contact, opted_out: bool, source: OptSource, now: datetime
) -> bool:
    """Opt the contact out (or back in), from ``source``; False when it already was.

    Only a change is recorded: a second stop keyword from an opted-out contact keeps the time
    and source of the first.
    """
    if (contact.opted_out_at is not None) == opted_out:
        return False
    if not opted_out:
        suppression.forget(session, contact.phone)
    contact.opted_out_at = now if opted_out else None
    contact.opt_changed_at = now
    contact.opt_source = source.value
    session.add(
        ContactOptChange(
            contact_id=contact.id, opted_out=opted_out, source=source.value, changed_at=now
        )
    )
    return True


def opt_history(session: Session, contact_id: int) -> list[ContactOptChange]:
    """The contact's latest opt changes, newest first."""
    return list(
        session.scalars(
            select(ContactOptChange)
            .where(ContactOptChange.contact_id == contact_id)
            .order_by(ContactOptChange.changed_at.desc(), ContactOptChange.id.desc())
            .limit(MAX_HISTORY)
        )
    )


def opt_out_suppressed(session: Session, created: Sequence[tuple[int, str]], now: datetime) -> int:
    """Opt out the new contacts, ``(id, phone)``, whose number an erased opted-out contact had
    (``suppression``); how many. Only those are read back: an import's other contacts cost a
    hash each, and one query for the batch."""
    by_hash = {suppression.phone_hash(phone): contact_id for contact_id, phone in created}
    if not by_hash:
        return 0
    suppressed = session.scalars(
        select(SuppressedPhone.phone_hash).where(
            among(session, SuppressedPhone.phone_hash, by_hash)
        )
    ).all()
    if not suppressed:
        return 0
    ids = [by_hash[h] for h in suppressed]
    contacts = session.scalars(select(Contact).where(among(session, Contact.id, ids))).all()
    return sum(record_opt_change(session, c, True, OptSource.SUPPRESSED, now) for c in contacts)
