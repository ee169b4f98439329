"""Inbound webhooks: verify the signature on the raw body, parse, store each event once, apply."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from relance.campaigns import repository as repo
from relance.campaigns.domain import MessageStatus
from relance.campaigns.followups import Followups
from relance.campaigns.sending import apply_status
from relance.campaigns.service import finish, opt_out, record_interaction
from relance.config import SIMULATOR_APP_SECRET, Settings
from relance.contacts.domain import is_stop_keyword
from relance.db import savepoint
from relance.models import InboundEvent, Message, utcnow
from relance.providers import meta_webhooks
from relance.providers.base import InteractionEvent, ProviderEvent, StatusEvent, WebhookRejected
from relance.providers.screening import screen

log = logging.getLogger(__name__)


def check_route(provider: str, settings: Settings) -> None:
    """Only the configured provider has a webhook: any other answers 404, body unread.

    The simulator signs with a public secret: its route open beside a real provider would let
    anyone forge replies and stop words.
    """
    if provider != settings.provider:
        raise WebhookRejected(404, f"no webhook for provider {provider[:40]!r} here")


def verify_and_parse(
    provider: str, settings: Settings, headers: Mapping[str, str], body: bytes, url: str
) -> list[ProviderEvent]:
    """Refuse (WebhookRejected) another provider's route, and anything unsigned, wrongly
    signed or malformed."""
    check_route(provider, settings)
    if provider in ("meta", "simulator"):
        secret = settings.meta_app_secret
        if provider == "meta" and secret == SIMULATOR_APP_SECRET:
            secret = ""  # the public default must never let a forged Meta webhook in
        meta_webhooks.verify_signature(headers, body, secret)
        return meta_webhooks.parse(body)
    if provider == "wassenger":
        from relance.providers import wassenger

        wassenger.verify_wassenger(settings, headers, body, url)
        return list(wassenger.parse_wassenger(body))
    if provider == "twilio":
        from relance.providers import twilio

        twilio.verify_twilio(settings, headers, body, url)
        return list(twilio.parse_twilio(body))
    raise AssertionError(f"RELANCE_PROVIDER {provider!r} has no webhook parser")


def _store_all(
    session: Session, provider: str, events: Sequence[ProviderEvent], now: datetime
) -> dict[str, int]:
    """Insert the events whose dedup key is new, in one statement; their ids by dedup key."""
    if not events:
        return {}
    dialect = session.get_bind().dialect.name
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    rows = [
        {
            "provider": provider,
            "dedup_key": event.dedup_key,
            "kind": "status" if isinstance(event, StatusEvent) else f"message:{event.kind}",
            "payload": event.raw,
            "received_at": now,
            "matched": False,
        }
        for event in events
    ]
    result = session.execute(
        ins(InboundEvent)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(InboundEvent.dedup_key, InboundEvent.id)
    )
    return {key: event_id for key, event_id in result}


def _find_messages(session: Session, events: Sequence[StatusEvent]) -> dict[str, Message]:
    """The messages the statuses are about, by provider id, in at most two queries."""
    if not events:
        return {}
    found = {
        m.provider_message_id or "": m
        for m in session.scalars(
            select(Message).where(
                Message.provider_message_id.in_({e.provider_message_id for e in events})
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
            select(Message).where(Message.id.in_(ours), Message.provider_message_id.is_(None))
        ):
            found[ours[m.id]] = m
    return found


def in_lock_order(events: Sequence[ProviderEvent]) -> list[ProviderEvent]:
    """Statuses grouped by message (in arrival order within one), then interactions.

    Two batches touching the same messages then lock their rows in the same order, so they
    wait for each other instead of deadlocking; per message, the order is kept.
    """
    statuses = [e for e in events if isinstance(e, StatusEvent)]
    statuses.sort(key=lambda e: e.provider_message_id)  # stable: arrival order per message
    return [*statuses, *(e for e in events if not isinstance(e, StatusEvent))]


def apply_events(
    session: Session,
    settings: Settings,
    followups: Followups,
    provider: str,
    events: Sequence[ProviderEvent],
    now: datetime | None = None,
) -> dict[str, int]:
    """Apply one webhook's events in the caller's transaction; duplicates change nothing."""
    now = now or utcnow()
    tally: Counter[str] = Counter()
    deltas = repo.Deltas()
    stop_words = settings.stop_keyword_set
    ordered = in_lock_order([screen(e) for e in events])
    new_ids = _store_all(session, provider, ordered, now)
    messages = _find_messages(
        session,
        [
            e
            for e in ordered
            if isinstance(e, StatusEvent) and e.dedup_key in new_ids and not e.rejected
        ],
    )
    results: list[dict[str, object]] = []
    for event in ordered:
        event_id = new_ids.pop(event.dedup_key, None)  # a key twice in one batch applies once
        if event_id is None:
            tally["duplicates"] += 1
            continue
        message_id: int | None = None
        recipient_id: int | None = None
        if event.rejected:
            # Stored so that it is seen, and a retry of it is a duplicate; never applied.
            results.append(
                {
                    "id": event_id,
                    "matched": False,
                    "outcome": f"rejected: {event.rejected}",
                    "message_id": None,
                    "recipient_id": None,
                }
            )
            tally["rejected"] += 1
            continue
        if isinstance(event, StatusEvent):
            message = messages.get(event.provider_message_id)
            if message is None:
                outcome = "unmatched"
            else:
                message_id, recipient_id = message.id, message.recipient_id
                outcome = apply_status(
                    session,
                    settings,
                    followups,
                    message,
                    MessageStatus(event.status),
                    event.provider_message_id,
                    event.error_code,
                    event.error_text,
                    now,
                    deltas,
                )
        elif isinstance(event, InteractionEvent) and is_stop_keyword(event.text, stop_words):
            outcome, moved = opt_out(session, event.from_phone, now)
            recipient_id = moved[0] if moved else None
        else:
            outcome, recipient_id = record_interaction(
                session,
                settings,
                followups,
                event.from_phone,
                event.context_provider_message_id,
                now,
            )
        matched = outcome not in ("unmatched", "unknown_contact")
        results.append(
            {
                "id": event_id,
                "matched": matched,
                "outcome": outcome,
                "message_id": message_id,
                "recipient_id": recipient_id,
            }
        )
        tally["applied"] += 1
        tally["unmatched" if not matched else "matched"] += 1
    if results:
        session.execute(update(InboundEvent), results)  # bulk UPDATE by primary key
    finish(session, deltas, now)
    return dict(tally)


def apply_each(
    session: Session,
    settings: Settings,
    followups: Followups,
    provider: str,
    events: Sequence[ProviderEvent],
    now: datetime | None = None,
) -> dict[str, int]:
    """A batch the database refused as a whole, applied again one event per savepoint.

    Only the event the database refuses is left out, stored as rejected: the others are
    applied and the webhook answered, instead of the provider retrying the batch for ever. A
    deadlock or lock timeout (OperationalError) still fails the whole transaction, to be retried.
    """
    now = now or utcnow()
    tally: Counter[str] = Counter()
    for event in events:
        try:
            with savepoint(session):
                tally.update(apply_events(session, settings, followups, provider, [event], now))
        except OperationalError:
            raise
        except SQLAlchemyError as exc:
            tally.update(_store_refused(session, settings, followups, provider, event, exc, now))
    return dict(tally)


def _store_refused(
    session: Session,
    settings: Settings,
    followups: Followups,
    provider: str,
    event: ProviderEvent,
    error: SQLAlchemyError,
    now: datetime,
) -> dict[str, int]:
    """Store as rejected the event the database refused; without its payload if that was it."""
    cause = type(getattr(error, "orig", None) or error).__name__
    log.error(
        "webhook event refused by the database",
        extra={"provider": provider, "dedup_key": event.dedup_key[:100], "error": cause},
    )
    for payload in (event.raw, {}):
        refused = dataclasses.replace(
            event, raw=payload, rejected=f"the database refused it ({cause})"
        )
        try:
            with savepoint(session):
                return apply_events(session, settings, followups, provider, [refused], now)
        except OperationalError:
            raise
        except SQLAlchemyError:
            continue
    log.error(
        "webhook event lost: the database refused even its rejection", extra={"provider": provider}
    )
    return {"lost": 1}
