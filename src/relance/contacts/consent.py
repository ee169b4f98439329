"""A contact's consent to marketing: opting out or back in, and where each change came from."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.campaigns.domain import OptSource
from relance.models import Contact, ContactOptChange

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
