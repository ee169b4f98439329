"""What a contact's message does: an answer in its window queues Message 2, a stop opts the
contact out of every open recipient and later launch, a resume opts it back in."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.campaigns import counters
from relance.campaigns import repository as repo
from relance.campaigns.domain import Applied, OptSource, Outcome, RecipientState
from relance.campaigns.followups import Followups, after_commit_send
from relance.config import Settings
from relance.contacts.consent import record_opt_change
from relance.models import Contact, Message, Recipient, utcnow
from relance.senders.identity import SenderInfo
from relance.senders.service import by_ref

S = RecipientState


def _contact_by_phone(session: Session, phone: str) -> Contact | None:
    return session.scalars(select(Contact).where(Contact.phone == phone)).one_or_none()


def record_interaction(
    session: Session,
    settings: Settings,
    followups: Followups,
    phone: str,
    context_provider_message_id: str | None = None,
    now: datetime | None = None,
    to_ref: str = "",
    said: str | None = None,
) -> Applied:
    """A contact answered: ``awaiting_reply -> replied`` by compare-and-set, Message 2 queued.

    ``to_ref`` names the number the answer came to: of a contact's open windows, the one that
    number opened is answered (a contact may be in two campaigns on two numbers).

    A second reply, or one after the window closed, is recorded by the caller and changes
    nothing here. ``said`` is what the answer said (``answer_rule.reply_text``), kept on the
    recipient for the results.
    """
    now = now or utcnow()
    contact = _contact_by_phone(session, phone)
    if contact is None:
        return Applied(Outcome.UNKNOWN_CONTACT)
    sender = by_ref(session, settings, to_ref) if to_ref else None
    recipient = _recipient_for_reply(session, contact.id, context_provider_message_id, sender)
    if recipient is None:
        return Applied(Outcome.NO_CAMPAIGN_AWAITING)
    won = repo.move_recipients(
        session,
        [Recipient.id == recipient.id, Recipient.window_closes_at > now],
        S.AWAITING_REPLY,
        S.REPLIED,
        now,
        reply_text=said,
    )
    if not won:
        current = session.scalar(select(Recipient.state).where(Recipient.id == recipient.id))
        # Still awaiting: its window closed and the sweep will record no_interaction.
        late = current in (S.NO_INTERACTION, S.AWAITING_REPLY)
        return Applied(Outcome.LATE_REPLY if late else Outcome.ALREADY_ANSWERED, recipient.id)
    counters.record(session, recipient.campaign_id, "interactions", now)
    message_id = repo.insert_message_2(
        session, recipient.id, recipient.campaign_id, settings.provider, now
    )
    after_commit_send(session, followups, message_id)
    return Applied(Outcome.MESSAGE_2_QUEUED, recipient.id)


def _recipient_for_reply(
    session: Session,
    contact_id: int,
    context_provider_message_id: str | None,
    sender: SenderInfo | None = None,
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
            *([_served_by(sender).desc()] if sender is not None else []),
            Recipient.awaiting_reply_at.desc().nulls_last(),
            Recipient.id.desc(),
        )
        .limit(1)
    ).first()
    return latest


def _served_by(sender: SenderInfo) -> Any:
    stored = sender.stored_id
    return Recipient.sender_id.is_(None) if stored is None else Recipient.sender_id == stored


def opt_out(
    session: Session,
    phone: str,
    now: datetime | None = None,
    source: OptSource = OptSource.KEYWORD,
) -> Applied:
    """The contact opts out (``source`` says from what): its open recipients end ``opted_out``,
    their unsent messages never go, and no later launch includes it.

    The recipient of the outcome is the first one it moved, if any.
    """
    now = now or utcnow()
    contact = _contact_by_phone(session, phone)
    if contact is None:
        return Applied(Outcome.UNKNOWN_CONTACT)
    changed = record_opt_change(session, contact, True, source, now)
    moved: list[int] = []
    for state in (S.QUEUED, S.AWAITING_REPLY, S.REPLIED):
        rows = repo.move_recipients(
            session, [Recipient.contact_id == contact.id], state, S.OPTED_OUT, now
        )
        moved.extend(r.id for r in rows)
    if moved:  # their unsent messages must never go out now
        repo.fail_unsent_messages(
            session,
            [Message.recipient_id.in_(moved)],
            "opted_out",
            "the contact opted out",
            now,
        )
    return Applied(
        Outcome.OPTED_OUT, moved[0] if moved else None, "" if changed else "already opted out"
    )


def opt_in(
    session: Session, phone: str, now: datetime | None = None, source: OptSource = OptSource.API
) -> Applied:
    """The contact opts back in: the next launch includes it again (recipients that ended
    ``opted_out`` stay so: they are final)."""
    contact = _contact_by_phone(session, phone)
    if contact is None:
        return Applied(Outcome.UNKNOWN_CONTACT)
    changed = record_opt_change(session, contact, False, source, now or utcnow())
    return Applied(Outcome.OPTED_IN, detail="" if changed else "was not opted out")
