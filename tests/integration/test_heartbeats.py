"""Heartbeats (relance.heartbeats) on SQLite and PostgreSQL: age, staleness, this host's check."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from relance import heartbeats
from relance.config import Settings
from relance.db import session_scope
from relance.models import Heartbeat, utcnow


def test_a_beat_is_reported_alive_until_it_misses_three(settings: Settings) -> None:
    name = heartbeats.process_name()
    started = utcnow()
    heartbeats.beat(settings, "worker", name, started)
    heartbeats.beat(settings, "worker", name, started)  # an upsert: still one row
    heartbeats.beat(settings, "beat", name, started)
    report = heartbeats.report(settings)
    assert [w["name"] for w in report["workers"]] == [name]
    assert report["workers"][0]["alive"] and report["beat"][0]["alive"]
    assert heartbeats.alive_here(settings, "worker")
    with session_scope(settings) as session:
        session.execute(
            update(Heartbeat)
            .where(Heartbeat.role == "worker")
            .values(seen_at=utcnow() - heartbeats.STALE_AFTER - timedelta(seconds=1))
        )
    report = heartbeats.report(settings)
    assert not report["workers"][0]["alive"]
    assert report["workers"][0]["age_seconds"] > heartbeats.STALE_AFTER.total_seconds()
    assert not heartbeats.alive_here(settings, "worker")
    assert heartbeats.alive_here(settings, "beat")


def test_a_clean_stop_forgets_its_row_and_old_rows_go(settings: Settings) -> None:
    name = heartbeats.process_name()
    heartbeats.beat(settings, "worker", "gone-long-ago:1", utcnow())
    with session_scope(settings) as session:
        session.execute(update(Heartbeat).values(seen_at=utcnow() - timedelta(days=2)))
    heartbeats.beat(settings, "worker", name, utcnow())
    assert [w["name"] for w in heartbeats.report(settings)["workers"]] == [name]
    heartbeats.forget(settings, "worker")
    assert heartbeats.report(settings)["workers"] == []
