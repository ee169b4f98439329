"""The webhook inbox: verified bodies appended by the route, applied in batches by workers.

The route answers 200 once the body is durable (``append``); ``apply_batch`` then claims the
oldest entries, parses them, applies their events in one transaction with the inline path's
rules (``inbound.apply_events``: dedup by key, statuses never backwards, counters summed per
campaign at commit) and marks them applied in the same transaction: a crash before the commit
leaves them to the next run, a run twice finds nothing left.

One applier at a time (a transaction-level advisory lock on PostgreSQL, SQLite's one writer):
entries are applied in id order, so the events of one message keep their order across batches.
The sweeps that decide without a webhook (a window closing, a send of unknown outcome) ask
``oldest_unapplied`` first: nothing accepted before their deadline may still wait here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, case, delete, func, insert, select, text, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from relance.campaigns.followups import Followups
from relance.campaigns.inbound import Receiver, apply_each, apply_events
from relance.config import Settings
from relance.db import is_postgresql, session_scope
from relance.models import WebhookInbox, utcnow
from relance.providers.base import WebhookRejected
from relance.providers.events import ProviderEvent
from relance.providers.webhooks import parse

log = logging.getLogger(__name__)
APPLIER_LOCK_KEY = 0x7265_6C69_6278  # one advisory lock number for every inbox applier
ATTEMPTS = 3
PURGE_BATCH = 5000


@dataclass(frozen=True)
class Entry:
    """One verified webhook body, as the route appends it."""

    provider: str
    body: bytes
    url: str | None
    received_at: datetime


def append(conn: Connection, entries: Sequence[Entry]) -> None:
    """Append entries in one INSERT on the caller's connection (the caller commits)."""
    if entries:
        conn.execute(
            insert(WebhookInbox),
            [
                {"provider": e.provider, "body": e.body, "url": e.url, "received_at": e.received_at}
                for e in entries
            ],
        )


def oldest_unapplied(session: Session) -> datetime | None:
    """When the oldest entry still waiting was accepted (None: the inbox is applied)."""
    at: datetime | None = session.scalar(
        select(func.min(WebhookInbox.received_at)).where(WebhookInbox.applied_at.is_(None))
    )
    return at


def lag_seconds(session: Session, now: datetime | None = None) -> float:
    """The inbox lag: the age of its oldest unapplied entry (0 when all are applied)."""
    oldest = oldest_unapplied(session)
    if oldest is None:
        return 0.0
    return max(0.0, ((now or utcnow()) - oldest).total_seconds())


def settled_before(session: Session, deadline: datetime) -> datetime:
    """``deadline``, or earlier if an entry accepted before it is still unapplied: a sweep
    may decide about what happened up to the returned time only."""
    oldest = oldest_unapplied(session)
    return deadline if oldest is None or oldest >= deadline else oldest


def purge_applied(session: Session, before: datetime, limit: int = PURGE_BATCH) -> int:
    """Delete up to ``limit`` applied entries accepted before ``before``, oldest first (the
    primary key's order is the arrival order: the scan stops at the first ``limit`` found).
    Entries still waiting are never deleted, however old."""
    oldest = (
        select(WebhookInbox.id)
        .where(WebhookInbox.applied_at.is_not(None), WebhookInbox.received_at < before)
        .order_by(WebhookInbox.id)
        .limit(limit)
    )
    result = session.execute(
        delete(WebhookInbox)
        .where(WebhookInbox.id.in_(oldest.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def apply_batch(settings: Settings, followups: Followups, limit: int | None = None) -> int | None:
    """Claim and apply the oldest unapplied entries in one transaction; how many (None: another
    applier holds the lock, and will see what we would have).

    A deadlock or lock timeout runs the batch again (up to three times); a batch the database
    refuses as a whole is applied again one event per savepoint (``inbound.apply_each``).
    """
    limit = limit or settings.webhook_apply_batch
    for attempt in range(ATTEMPTS):
        try:
            return _in_transaction(settings, followups, limit, bulk=True)
        except OperationalError:
            if attempt == ATTEMPTS - 1:
                raise
        except SQLAlchemyError:
            log.exception("the database refused an inbox batch: applying it event by event")
            return _in_transaction(settings, followups, limit, bulk=False)
    raise AssertionError("unreachable")


def drain(
    settings: Settings, followups: Followups, budget_seconds: float | None = None
) -> dict[str, int | bool]:
    """Apply batches until the inbox is empty, another applier has it, or the budget ran out
    (``more``: entries were left)."""
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    entries = batches = 0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return {"applied": entries, "batches": batches, "more": True}
        n = apply_batch(settings, followups)
        if n is None:  # the holder drains what is there, and looks again after its last batch
            return {"applied": entries, "batches": batches, "more": False}
        if n == 0:
            # An applier that missed our lock while we saw nothing gave up: look once more,
            # after our commit, so that its entry is not left for the next Beat tick.
            with session_scope(settings) as session:
                if oldest_unapplied(session) is None:
                    return {"applied": entries, "batches": batches, "more": False}
            continue
        entries += n
        batches += 1


def _in_transaction(settings: Settings, followups: Followups, limit: int, bulk: bool) -> int | None:
    with session_scope(settings) as session:
        if is_postgresql(session):
            # One applier at a time keeps id order across batches (SQLite has one writer).
            got = session.scalar(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": APPLIER_LOCK_KEY}
            )
            if not got:
                return None
        rows = list(
            session.execute(
                select(
                    WebhookInbox.id,
                    WebhookInbox.provider,
                    WebhookInbox.body,
                    WebhookInbox.url,
                    WebhookInbox.received_at,
                )
                .where(WebhookInbox.applied_at.is_(None))
                .order_by(WebhookInbox.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if not rows:
            return 0
        errors: dict[int, str] = {}
        # Consecutive entries of one provider go together (in practice: all of them).
        groups: list[tuple[str, list[ProviderEvent], list[datetime]]] = []
        for row in rows:
            try:
                events = parse(row.provider, row.body, row.url or "")
            except WebhookRejected as exc:
                errors[row.id] = exc.detail[:1000]
                log.error(
                    "a signed webhook in the inbox cannot be parsed",
                    extra={"inbox_id": row.id, "error": exc.detail[:200]},
                )
                continue
            if not groups or groups[-1][0] != row.provider:
                groups.append((row.provider, [], []))
            groups[-1][1].extend(events)
            groups[-1][2].extend([row.received_at] * len(events))
        for provider, events, times in groups:
            receiver = Receiver(settings, followups, provider)
            if bulk:
                apply_events(session, receiver, events, received=times)
            else:
                apply_each(session, receiver, events, received=times)
        _mark_applied(session, [row.id for row in rows], errors)
        return len(rows)


def _mark_applied(session: Session, ids: list[int], errors: dict[int, str]) -> None:
    values: dict[str, object] = {"applied_at": utcnow()}
    if errors:
        values["error"] = case(errors, value=WebhookInbox.id, else_=None)
    session.execute(
        update(WebhookInbox)
        .where(WebhookInbox.id.in_(ids))
        .values(values)
        .execution_options(synchronize_session=False)
    )
