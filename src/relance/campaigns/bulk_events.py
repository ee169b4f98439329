"""Inbound events stored and marked set-based: one statement each per batch, whatever its size.

On PostgreSQL the batch goes as arrays (``unnest``): the statement's text never changes, so it
is compiled and prepared once, and its parameters are a handful of arrays. A batch of 10,000
events spent more in SQLAlchemy compiling a ``VALUES`` or ``CASE`` of 10,000 rows, and psycopg
splitting its text, than in the database. SQLite (embedded mode, small batches) uses plain
executemany statements.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from relance.db import is_postgresql
from relance.models import InboundEvent
from relance.providers.events import (
    NoticeEvent,
    ProviderEvent,
    SenderEvent,
    StatusEvent,
    TemplateEvent,
)

_STORE_PG = text(
    """
    INSERT INTO inbound_events (provider, dedup_key, kind, payload, received_at, matched)
    SELECT :provider, v.dedup_key, v.kind, p.payload, v.received_at, false
    FROM unnest(
        CAST(:keys AS TEXT[]), CAST(:kinds AS TEXT[]), CAST(:received AS TIMESTAMPTZ[])
    ) WITH ORDINALITY AS v(dedup_key, kind, received_at, n)
    -- The payloads as one JSON array: an array of JSON texts costs an escape per character.
    JOIN jsonb_array_elements(CAST(:payloads AS JSONB)) WITH ORDINALITY AS p(payload, n)
        ON p.n = v.n
    ORDER BY v.n
    ON CONFLICT (dedup_key) DO NOTHING
    RETURNING dedup_key, id
    """
)

_MARK_PG = text(
    """
    UPDATE inbound_events AS e
    SET matched = v.matched, outcome = v.outcome, message_id = v.message_id,
        recipient_id = v.recipient_id
    FROM unnest(
        CAST(:ids AS INTEGER[]), CAST(:matched AS BOOLEAN[]), CAST(:outcomes AS TEXT[]),
        CAST(:message_ids AS INTEGER[]), CAST(:recipient_ids AS INTEGER[])
    ) AS v(id, matched, outcome, message_id, recipient_id)
    WHERE e.id = v.id
    """
)


def stored_kind(event: ProviderEvent) -> str:
    """``inbound_events.kind``: status, message:<type>, preference, template:<signal>,
    notice:<what> (at most 30 characters)."""
    if isinstance(event, StatusEvent):
        return "status"
    if isinstance(event, TemplateEvent):
        return f"template:{event.signal}"
    if isinstance(event, NoticeEvent):
        return f"notice:{event.kind}"[:30]
    if isinstance(event, SenderEvent):
        return f"sender:{event.signal}"
    return "preference" if event.kind == "user_preferences" else f"message:{event.kind}"


def store_all(
    session: Session, provider: str, events: Sequence[tuple[ProviderEvent, datetime]]
) -> dict[str, int]:
    """Insert the events whose dedup key is new (in their order); their ids by dedup key."""
    if not events:
        return {}
    if is_postgresql(session):
        result = session.execute(
            _STORE_PG,
            {
                "provider": provider,
                "keys": [e.dedup_key for e, _ in events],
                "kinds": [stored_kind(e) for e, _ in events],
                "payloads": json.dumps([e.raw for e, _ in events]),
                "received": [at for _, at in events],
            },
        )
        return {key: event_id for key, event_id in result}
    rows = [
        {
            "provider": provider,
            "dedup_key": event.dedup_key,
            "kind": stored_kind(event),
            "payload": event.raw,
            "received_at": at,
            "matched": False,
        }
        for event, at in events
    ]
    stored = session.execute(
        sqlite_insert(InboundEvent)
        .on_conflict_do_nothing(index_elements=["dedup_key"])
        .returning(InboundEvent.dedup_key, InboundEvent.id),
        rows,
    )
    return {key: event_id for key, event_id in stored}


def mark_all(session: Session, results: Sequence[dict[str, Any]]) -> None:
    """Record what each stored event did: ``{"id", "matched", "outcome", "message_id",
    "recipient_id"}`` each."""
    if not results:
        return
    if is_postgresql(session):
        session.execute(
            _MARK_PG,
            {
                "ids": [r["id"] for r in results],
                "matched": [r["matched"] for r in results],
                "outcomes": [r["outcome"] for r in results],
                "message_ids": [r["message_id"] for r in results],
                "recipient_ids": [r["recipient_id"] for r in results],
            },
        )
    else:
        session.execute(update(InboundEvent), list(results))  # bulk UPDATE by primary key
