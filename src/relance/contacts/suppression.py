"""Opt-outs that outlive their contact.

Erasing a contact (right to erasure) must not erase its "stop": the next import of a file that
still holds the number would make it reachable again, and relance would message someone who
asked it not to. So an erased opted-out contact leaves its number's SHA-256 in
``suppressed_phones`` (with when it opted out), and a contact made again with that number (an
import, ``POST /api/contacts``) starts opted out, with an opt change of source ``suppressed``.
Opting it back in (its own START, a person through the API) forgets the hash.

A hash is not anonymisation (phone numbers are few enough to guess): it keeps the number out of
plain sight, and only to honour the opt-out.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from relance.db import conflict_insert
from relance.models import SuppressedPhone


def phone_hash(phone: str) -> str:
    """The SHA-256 of the E.164 number, in hex."""
    return hashlib.sha256(phone.encode()).hexdigest()


def remember(session: Session, phone: str, opted_out_at: datetime) -> None:
    """An erased contact's opt-out, kept (the first one kept wins)."""
    session.execute(
        conflict_insert(session, SuppressedPhone)
        .values(phone_hash=phone_hash(phone), opted_out_at=opted_out_at)
        .on_conflict_do_nothing(index_elements=["phone_hash"])
    )


def forget(session: Session, phone: str) -> None:
    """The number opted back in: nothing to suppress any more."""
    session.execute(delete(SuppressedPhone).where(SuppressedPhone.phone_hash == phone_hash(phone)))
