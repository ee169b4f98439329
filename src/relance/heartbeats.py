"""Heartbeats: each worker and Beat says every ``HEARTBEAT_SECONDS`` that it is alive.

``/health`` (with a key) shows each one's age, and ``relance check worker|beat`` (a Compose
healthcheck) succeeds while this host's process of that role beat recently. The beat is a row
per process (role, host and pid) in the database every process already shares.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from relance.config import Settings
from relance.db import conflict_insert, session_scope
from relance.models import Heartbeat, utcnow

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 10.0
STALE_AFTER = timedelta(seconds=3 * HEARTBEAT_SECONDS)  # three missed beats: it is gone
FORGET_AFTER = timedelta(days=1)  # a process that stopped long ago is no news


def process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def beat(settings: Settings, role: str, name: str, started_at: datetime) -> None:
    """Record that this process is alive now (an upsert of its row)."""
    now = utcnow()
    with session_scope(settings) as session:
        row = {"role": role, "name": name, "pid": os.getpid(), "started_at": started_at}
        session.execute(
            conflict_insert(session, Heartbeat)
            .values(**row, seen_at=now)
            .on_conflict_do_update(index_elements=["role", "name"], set_={"seen_at": now})
        )
        session.execute(delete(Heartbeat).where(Heartbeat.seen_at < now - FORGET_AFTER))


def start(settings: Settings, role: str, interval: float = HEARTBEAT_SECONDS) -> threading.Event:
    """Beat now, then every ``interval`` seconds in a daemon thread; set the event to stop."""
    stop = threading.Event()
    name, started_at = process_name(), utcnow()

    def run() -> None:
        while True:
            try:
                beat(settings, role, name, started_at)
            except Exception as exc:  # the database is away: the age shows it
                log.warning("heartbeat not recorded: %s", exc)
            if stop.wait(interval):
                return

    threading.Thread(target=run, name=f"heartbeat-{role}", daemon=True).start()
    return stop


def report(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Each known worker and Beat with its age and whether it is stale, by role."""
    now = utcnow()
    with session_scope(settings) as session:
        rows = session.scalars(select(Heartbeat).order_by(Heartbeat.role, Heartbeat.name)).all()
    out: dict[str, list[dict[str, Any]]] = {"workers": [], "beat": []}
    for row in rows:
        age = now - row.seen_at
        entry = {
            "name": row.name,
            "age_seconds": round(age.total_seconds(), 1),
            "alive": age <= STALE_AFTER,
            "started_at": row.started_at.isoformat(),
        }
        out["workers" if row.role == "worker" else "beat"].append(entry)
    return out


def alive_here(settings: Settings, role: str) -> bool:
    """Did a process of this role on this host beat recently (Compose healthcheck)?"""
    host = socket.gethostname()
    with session_scope(settings) as session:
        newest = session.scalar(
            select(Heartbeat.seen_at)
            .where(Heartbeat.role == role, Heartbeat.name.startswith(f"{host}:"))
            .order_by(Heartbeat.seen_at.desc())
            .limit(1)
        )
    return newest is not None and utcnow() - newest <= STALE_AFTER


def forget(settings: Settings, role: str) -> None:
    """A process stopping cleanly says so: its row goes (a stale one means a crash)."""
    with session_scope(settings) as session:
        session.execute(
            delete(Heartbeat).where(Heartbeat.role == role, Heartbeat.name == process_name())
        )
