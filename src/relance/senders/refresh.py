"""Each Cloud API number's messaging limit, quality rating and throughput, read from Meta.

``GET {META_GRAPH_URL}/{META_API_VERSION}/{phone_number_id}?fields=...`` for every sender of
the Cloud API (the default one's id is META_PHONE_NUMBER_ID), by Beat every
META_REFRESH_SECONDS and by ``relance sender refresh``. The requests are made outside any
transaction (no row stays locked while Meta answers); what they say is applied in one. A
number Meta does not answer for, or answers without the fields, keeps its configured values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.config import Settings
from relance.db import session_scope
from relance.models import Sender, utcnow
from relance.providers.http import join_url, json_object
from relance.senders.meta_reading import (
    FIELDS,
    NumberReading,
    SenderState,
    portfolio_limit,
    read_number,
    sender_changes,
)
from relance.senders.service import infos, set_portfolio_limit

log = logging.getLogger(__name__)
TIMEOUT = httpx.Timeout(15.0, connect=5.0)


def read(client: httpx.Client, settings: Settings, phone_number_id: str) -> NumberReading | str:
    """What Meta says of one number, or why it said nothing usable."""
    url = join_url(settings.meta_graph_url, settings.meta_api_version, phone_number_id)
    headers = {"Authorization": f"Bearer {settings.meta_access_token}"}
    try:
        response = client.get(url, params={"fields": FIELDS}, headers=headers)
    except httpx.HTTPError as exc:
        return f"could not reach the Graph API: {type(exc).__name__}"
    body = json_object(response)
    if not response.is_success:
        error = body.get("error")
        said = error.get("message") if isinstance(error, Mapping) else None
        return f"the Graph API answered HTTP {response.status_code}: {said or 'no detail'}"
    reading = read_number(body)
    return "the Graph API answered none of the fields" if reading.empty else reading


def apply(
    session: Session,
    settings: Settings,
    readings: Mapping[int, NumberReading | str],
    now: datetime,
) -> list[str]:
    """Each reading onto its sender (row locked), the limit onto its portfolio; what it did."""
    said = []
    for sender_id, reading in sorted(readings.items()):
        locked = select(Sender).where(Sender.id == sender_id).with_for_update()
        row = session.scalars(locked).first()
        if row is None:
            continue  # deleted while Meta answered
        if isinstance(reading, str):
            log.warning("a number's limits were not read", extra={"sender_id": row.id})
            said.append(f"sender {row.id}: {reading}; its configured values stay")
            continue
        state = SenderState(
            row.status,  # type: ignore[arg-type]
            row.paused_reason,
            row.quality_rating,
            row.throughput_per_second,
        )
        changes = sender_changes(state, reading, settings.quality_red_action)
        for name, value in changes.items():
            setattr(row, name, value)
        row.meta_checked_at = row.updated_at = now
        known, limit = portfolio_limit(reading)
        if known:
            set_portfolio_limit(session, {row.portfolio or ""}, limit, now)
        session.flush()
        shown = {**changes, **({"messaging_limit": limit} if known else {})}
        said.append(f"sender {row.id}: " + (_shown(shown) or "unchanged"))
    return said


def _shown(changes: Mapping[str, object]) -> str:
    return ", ".join(f"{k} {v if v is not None else 'default'}" for k, v in changes.items())


def refresh_senders(settings: Settings, now: datetime | None = None) -> list[str]:
    """Read every Cloud API number from Meta and apply what it says (the entrypoint: it owns
    its two short transactions)."""
    if settings.provider != "meta":
        return [f"RELANCE_PROVIDER={settings.provider}: no Graph API to read"]
    with session_scope(settings) as session:
        targets = {
            sender.id: sender.ref
            for sender in infos(session, settings).values()
            if sender.provider == "meta" and sender.ref
        }
    with httpx.Client(timeout=TIMEOUT) as client:
        readings = {sender_id: read(client, settings, ref) for sender_id, ref in targets.items()}
    with session_scope(settings) as session:
        return apply(session, settings, readings, now or utcnow())
