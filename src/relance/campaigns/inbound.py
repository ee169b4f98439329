"""The inbound path: every event a provider's webhook carried, stored once and applied.

The webhook endpoint verifies and parses (``relance.providers``); here, in the request's one
transaction, the events are screened, stored (a duplicate collides on its dedup key and changes
nothing), and applied by the domain's rules: a status moves its message forward
(``outcomes.apply_status``); a contact's message is judged by ``answer_rule``: an answer
(``answers.record_interaction``), a stop or resume (``answers.opt_out`` / ``opt_in``), or not an
answer (stored with why, nothing else); a template signal goes to ``on_template_signal``; a
notice is only stored. Counters and completion follow at commit (``counters``); Message 2 is
sent after it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from relance.campaigns.answer_rule import Effect, judge, judge_notice, reply_text, stop_phrases
from relance.campaigns.answers import opt_in, opt_out, record_interaction
from relance.campaigns.bulk_events import mark_all, store_all, stored_kind
from relance.campaigns.bulk_status import apply_forward
from relance.campaigns.domain import Applied, OptSource, Outcome
from relance.campaigns.followups import Followups
from relance.campaigns.outcomes import apply_status
from relance.campaigns.template_signals import apply_template_status
from relance.config import Settings
from relance.db import among, on_commit, savepoint, session_scope
from relance.metrics.webhook_events import count_webhook_events
from relance.models import Message, utcnow
from relance.providers.events import (
    InteractionEvent,
    NoticeEvent,
    ProviderEvent,
    SenderEvent,
    StatusEvent,
    TemplateEvent,
)
from relance.providers.screening import screen
from relance.senders.signals import apply_sender_event

log = logging.getLogger(__name__)


def _find_messages(session: Session, events: Sequence[StatusEvent]) -> dict[str, Message]:
    """The messages the statuses are about, by provider id, in at most two queries."""
    if not events:
        return {}
    found = {
        m.provider_message_id or "": m
        for m in session.scalars(
            select(Message).where(
                among(session, Message.provider_message_id, {e.provider_message_id for e in events})
            )
        )
    }
    ours = {
        e.our_message_id: e.provider_message_id
        for e in events
        if e.provider_message_id not in found and e.our_message_id is not None
    }
    if ours:
        # We crashed before storing the provider id: biz_opaque_callback_data still matches.
        for m in session.scalars(
            select(Message).where(
                among(session, Message.id, ours), Message.provider_message_id.is_(None)
            )
        ):
            found[ours[m.id]] = m
    return found


def in_lock_order(
    events: Sequence[tuple[ProviderEvent, datetime]],
) -> list[tuple[ProviderEvent, datetime]]:
    """Statuses grouped by message (in arrival order within one), then interactions.

    Two batches touching the same messages then lock their rows in the same order, so they
    wait for each other instead of deadlocking; per message, the order is kept.
    """
    statuses = [(e, at) for e, at in events if isinstance(e, StatusEvent)]
    statuses.sort(key=lambda pair: pair[0].provider_message_id)
    return [*statuses, *((e, at) for e, at in events if not isinstance(e, StatusEvent))]


@dataclass(frozen=True)
class Receiver:
    """Who a webhook's events come from (the provider) and what acts on them."""

    settings: Settings
    followups: Followups
    provider: str


def apply_events(
    session: Session,
    receiver: Receiver,
    events: Sequence[ProviderEvent],
    now: datetime | None = None,
    received: Sequence[datetime] | None = None,
) -> dict[str, int]:
    """Apply one webhook's events in the caller's transaction; duplicates change nothing.

    Every event is stored once (its dedup key is unique), with what it did (``Outcome``).
    ``received``: when each event was accepted (the inbox's batches span many webhooks), else
    ``now`` for all: a reply is judged in its window by when it came, not when it is applied.
    """
    now = now or utcnow()
    times = list(received) if received is not None else [now] * len(events)
    tally: Counter[str] = Counter()
    ordered = in_lock_order([(screen(e), at) for e, at in zip(events, times, strict=True)])
    new_ids = store_all(session, receiver.provider, ordered)
    messages = _find_messages(
        session,
        [
            e
            for e, _ in ordered
            if isinstance(e, StatusEvent) and e.dedup_key in new_ids and not e.rejected
        ],
    )
    # Most statuses move their message forward in one UPDATE for the whole batch.
    fast = apply_forward(session, _new_statuses(ordered, new_ids, messages))
    results: list[dict[str, object]] = []
    counted: list[tuple[ProviderEvent, str]] = []
    for event, at in ordered:
        event_id = new_ids.pop(event.dedup_key, None)  # a key twice in one batch applies once
        if event_id is None:
            tally["duplicates"] += 1
            counted.append((event, "duplicate"))
            continue
        message = (
            messages.get(event.provider_message_id) if isinstance(event, StatusEvent) else None
        )
        done = fast.pop(event.dedup_key, None)
        applied = done or _apply_one(session, receiver, event, message, at)
        results.append(
            {
                "id": event_id,
                "matched": applied.outcome.matched,
                "outcome": applied.text,
                "message_id": message.id if message is not None else None,
                "recipient_id": applied.recipient_id,
            }
        )
        counted.append((event, applied.outcome.value))
        if applied.outcome == Outcome.REJECTED:
            tally["rejected"] += 1
            continue
        tally["applied"] += 1
        tally[applied.outcome.tally] += 1
    mark_all(session, results)
    counts = [
        (stored_kind(e).partition(":")[0], o, getattr(e, "timestamp", None)) for e, o in counted
    ]
    on_commit(session, lambda: count_webhook_events(receiver.provider, counts, now))
    return dict(tally)


def _new_statuses(
    ordered: Sequence[tuple[ProviderEvent, datetime]],
    new_ids: dict[str, int],
    messages: dict[str, Message],
) -> list[tuple[StatusEvent, datetime, Message | None]]:
    """The batch's new, applicable statuses (each key once), with their message."""
    seen: set[str] = set()
    out = []
    for event, at in ordered:
        if (
            isinstance(event, StatusEvent)
            and event.dedup_key in new_ids
            and event.dedup_key not in seen
            and not event.rejected
        ):
            seen.add(event.dedup_key)
            out.append((event, at, messages.get(event.provider_message_id)))
    return out


def _apply_one(
    session: Session,
    receiver: Receiver,
    event: ProviderEvent,
    message: Message | None,
    now: datetime,
) -> Applied:
    """What one new event does, by the domain's rules."""
    settings, followups = receiver.settings, receiver.followups
    if event.rejected:
        # Stored so that it is seen, and a retry of it is a duplicate; never applied.
        return Applied(Outcome.REJECTED, detail=event.rejected)
    if isinstance(event, StatusEvent):
        if message is None:
            return Applied(Outcome.UNMATCHED)
        return apply_status(session, settings, followups, message, event, now)
    if isinstance(event, TemplateEvent):
        return on_template_signal(session, receiver, event, now)
    if isinstance(event, NoticeEvent):
        return Applied(Outcome.NOT_AN_ANSWER, detail=judge_notice(event.kind, event.detail).why)
    if isinstance(event, SenderEvent):
        detail = apply_sender_event(session, settings, event, now)
        return Applied(Outcome.SENDER_SIGNAL, detail=detail)
    return _apply_contact_event(session, receiver, event, now)


def _apply_contact_event(
    session: Session, receiver: Receiver, event: InteractionEvent, now: datetime
) -> Applied:
    """A contact's message or preference, by the answer rule."""
    settings = receiver.settings
    phrases = stop_phrases(settings.stop_keywords, settings.stop_buttons)
    verdict = judge(event.kind, event.subtype, event.text, event.payload, phrases)
    source = verdict.source or OptSource.KEYWORD
    if verdict.effect == Effect.OPT_OUT:
        return opt_out(session, event.from_phone, now, source)
    if verdict.effect == Effect.OPT_IN:
        return opt_in(session, event.from_phone, now, source)
    if verdict.effect == Effect.NOT_AN_ANSWER:
        return Applied(Outcome.NOT_AN_ANSWER, detail=verdict.why)
    return record_interaction(
        session,
        settings,
        receiver.followups,
        event.from_phone,
        event.context_provider_message_id,
        now,
        to_ref=event.to_ref,
        said=reply_text(event.kind, event.subtype, event.text),
    )


def on_template_signal(
    session: Session, receiver: Receiver, event: TemplateEvent, now: datetime
) -> Applied:
    """A template's new status, quality score or category: stored; a status that stops or
    allows sending pauses or resumes its campaigns (``template_signals``)."""
    about = f"{event.name} {event.language}".strip() or event.template_id
    change = f"{event.previous} -> {event.value}" if event.previous else event.value
    reason = f": {event.reason}" if event.reason else ""
    done = apply_template_status(session, receiver.followups, event, now)
    detail = f"{event.signal} of {about} {change}{reason}" + (f"; {done}" if done else "")
    return Applied(Outcome.TEMPLATE_SIGNAL, detail=detail)


def apply_webhook(receiver: Receiver, events: Sequence[ProviderEvent]) -> dict[str, int]:
    """Apply a verified webhook's events in one transaction of its own; a tally.

    It owns its transactions, like the dispatcher: a deadlock or lock timeout sends the whole
    batch again (up to three times), and a batch the database refuses is applied again one
    event at a time, so that one bad event never holds back the rest of its batch.
    """
    try:
        return _in_transaction(
            receiver.settings, lambda session: apply_events(session, receiver, events)
        )
    except OperationalError:
        raise
    except SQLAlchemyError:
        log.exception("the database refused a webhook batch: applying it event by event")
        return _in_transaction(
            receiver.settings, lambda session: _apply_each(session, receiver, events)
        )


def _in_transaction(
    settings: Settings, work: Callable[[Session], dict[str, int]], attempts: int = 3
) -> dict[str, int]:
    for attempt in range(attempts):
        try:
            with session_scope(settings) as session:
                return work(session)
        except OperationalError:  # a deadlock or lock timeout: the whole batch goes again
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _apply_each(
    session: Session, receiver: Receiver, events: Sequence[ProviderEvent]
) -> dict[str, int]:
    return apply_each(session, receiver, events)


def apply_each(
    session: Session,
    receiver: Receiver,
    events: Sequence[ProviderEvent],
    received: Sequence[datetime] | None = None,
) -> dict[str, int]:
    """A batch the database refused as a whole, applied again one event per savepoint.

    Only the event the database refuses is left out, stored as rejected: the others are
    applied and the webhook answered, instead of the provider retrying the batch for ever. A
    deadlock or lock timeout (OperationalError) still fails the whole transaction, to be retried.
    """
    now = utcnow()
    times = list(received) if received is not None else [now] * len(events)
    tally: Counter[str] = Counter()
    for event, at in zip(events, times, strict=True):
        try:
            with savepoint(session):
                tally.update(apply_events(session, receiver, [event], at))
        except OperationalError:
            raise
        except SQLAlchemyError as exc:
            tally.update(_store_refused(session, receiver, event, exc, at))
    return dict(tally)


def _store_refused(
    session: Session,
    receiver: Receiver,
    event: ProviderEvent,
    error: SQLAlchemyError,
    now: datetime,
) -> dict[str, int]:
    """Store as rejected the event the database refused; without its payload if that was it."""
    cause = type(getattr(error, "orig", None) or error).__name__
    log.error(
        "webhook event refused by the database",
        extra={"provider": receiver.provider, "dedup_key": event.dedup_key[:100], "error": cause},
    )
    for payload in (event.raw, {}):
        refused = dataclasses.replace(
            event, raw=payload, rejected=f"the database refused it ({cause})"
        )
        try:
            with savepoint(session):
                return apply_events(session, receiver, [refused], now)
        except OperationalError:
            raise
        except SQLAlchemyError:
            continue
    log.error(
        "webhook event lost: the database refused even its rejection",
        extra={"provider": receiver.provider},
    )
    return {"lost": 1}
