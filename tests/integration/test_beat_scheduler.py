"""The Beat sends a due task only while its PostgreSQL lease is held (issue 17: two Beats never
tick the same period, even in the seconds after a database restart)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from celery.beat import ScheduleEntry

from relance import beat_scheduler
from relance.leases import PostgresLease
from relance.worker import celery_app

pytestmark = pytest.mark.integration

TEST_KEY = 0x7E57_BEA7  # not the real Beat's key: a test run must not stop a running Beat


@pytest.fixture
def lease(pg_url: str) -> Iterator[PostgresLease]:
    held = PostgresLease(pg_url, key=TEST_KEY)
    held.acquire()
    beat_scheduler.hold(held)
    yield held
    held.release()
    beat_scheduler._lease = None


def _drop_connection_of(lease: PostgresLease, pg_url: str) -> None:
    """What a PostgreSQL restart does to the lease: its backend ends, the advisory lock with it."""
    conninfo = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        row = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s",
            (TEST_KEY & 0xFFFF_FFFF,),
        ).fetchone()
        assert row is not None, "the lease's lock should be held"
        admin.execute("SELECT pg_terminate_backend(%s)", (row[0],))


def test_a_beat_ticks_while_it_holds_the_lease_and_skips_once_it_is_gone(
    lease: PostgresLease, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str] = []

    def record(self: Any, entry: ScheduleEntry, producer: Any = None, **_: Any) -> None:
        sent.append(entry.name)

    monkeypatch.setattr(beat_scheduler.LeasedScheduler, "apply_async", record)
    scheduler = beat_scheduler.LeasedScheduler(
        app=celery_app, schedule_filename=str(tmp_path / "schedule"), lazy=True
    )
    entry = ScheduleEntry(name="sweep", task="relance.noop", schedule=60.0, app=celery_app)

    scheduler.apply_entry(entry)
    assert sent == ["sweep"]

    _drop_connection_of(lease, pg_url)
    scheduler.apply_entry(entry)
    assert sent == ["sweep"], "a Beat without its lease must not send"

    lease.release()
    lease.acquire()  # the keeper took it back
    scheduler.apply_entry(entry)
    assert sent == ["sweep", "sweep"]
