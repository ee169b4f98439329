"""Messages that fail for good, and what becomes of their recipients.

A failure comes from the send's answer (``outcomes.record_outcomes``), from a ``failed`` status
webhook (``outcomes.apply_status``), even after the provider had accepted the message, or from
crash recovery (``sweeps``). The message keeps the provider's code and words (``error_code``,
``error_text``); its recipient ends ``failed`` with why (``last_error``, ``last_error_code``).
What the code means (``providers.failures``) adds to that:

* ``opted_out`` (Meta 131050): the contact stopped marketing messages; it is opted out as by
  a stop keyword, and its open recipients end ``opted_out``;
* ``limited`` (Meta 131049): counted apart (the ``limited`` counter); retry-limited sends
  those again later;
* ``needs_template`` (Meta 131047): the reason says that only a template may reach the contact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from relance.campaigns import counters
from relance.campaigns import repository as repo
from relance.campaigns.answers import opt_out
from relance.campaigns.domain import (
    MessageKind,
    MessageStatus,
    OptSource,
    RecipientState,
    failure_reason,
)
from relance.campaigns.followups import Followups, after_commit_check
from relance.config import Settings
from relance.models import Contact, Message, Recipient
from relance.providers.failures import effect_of

S = RecipientState
MS = MessageStatus
# The states a recipient leaves when its message fails for good: a Message 1 while it is sent
# (queued), while the contact may answer (awaiting_reply) or, reported failed after the send,
# in a campaign without Message 2 (done); a Message 2 before (replied) or after its send.
FAILING_FROM: dict[str, tuple[RecipientState, ...]] = {
    MessageKind.MESSAGE_1.value: (S.QUEUED, S.AWAITING_REPLY, S.DONE),
    MessageKind.MESSAGE_2.value: (S.REPLIED, S.MESSAGE_2_SENT),
}


def fail_messages(
    session: Session,
    message_ids: Sequence[int],
    code: str,
    text: str,
    now: datetime,
    from_status: MessageStatus | None = MS.SENDING,
    followups: Followups | None = None,
    settings: Settings | None = None,
) -> int:
    """Messages fail for good; their recipients end ``failed`` (E2: counted, checked)."""
    code = code[:50]
    where = [Message.id.in_(message_ids), Message.status != MS.FAILED.value]
    if from_status is not None:
        where.append(Message.status == from_status.value)
    rows = list(
        session.execute(
            update(Message)
            .where(*where)
            .values(status=MS.FAILED.value, failed_at=now, error_code=code, error_text=text)
            .returning(
                Message.id,
                Message.recipient_id,
                Message.campaign_id,
                Message.kind,
                Message.provider,
            )
            .execution_options(synchronize_session=False)
        )
    )
    for message_id, recipient_id, campaign_id, kind, provider in rows:
        effect = effect_of(provider, code)
        reason = failure_reason(code, text, effect)[:1000]
        if effect == "opted_out":
            _opt_out_contact_of(session, recipient_id, reason, code, now)
        for old in FAILING_FROM[kind]:
            moved = repo.move_recipients(
                session,
                [Recipient.id == recipient_id, _is_latest_message(message_id)],
                old,
                S.FAILED,
                now,
                last_error=reason,
                last_error_code=code,
            )
            if moved and effect == "limited":
                counters.record(session, campaign_id, "limited", now)
            if moved:
                break
        if kind == MessageKind.MESSAGE_2 and followups is not None and settings is not None:
            after_commit_check(
                session, followups, campaign_id, settings.status_check_countdown_seconds
            )
    return len(rows)


def _is_latest_message(message_id: int) -> object:
    """The failed message is its recipient's latest: a late failure of a Message 1 that
    retry-failed has replaced, or of a message before the contact's answer, moves nothing."""
    newer = select(Message.id).where(Message.recipient_id == Recipient.id, Message.id > message_id)
    return ~exists(newer)


def _opt_out_contact_of(
    session: Session, recipient_id: int, reason: str, code: str, now: datetime
) -> None:
    """The contact stopped marketing messages (Meta told us with the failure): opted out."""
    phone = session.scalar(
        select(Contact.phone)
        .join(Recipient, Recipient.contact_id == Contact.id)
        .where(Recipient.id == recipient_id)
    )
    if phone is None:  # an anonymised recipient: its contact is gone already
        return
    opt_out(session, phone, now, OptSource.SEND_ERROR)
    session.execute(
        update(Recipient)
        .where(Recipient.id == recipient_id, Recipient.state == S.OPTED_OUT.value)
        .values(last_error=reason, last_error_code=code)
        .execution_options(synchronize_session=False)
    )
