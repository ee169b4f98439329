"""The Alembic migration on PostgreSQL and SQLite: idempotent, reversible, constrained."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from relance.campaigns import claims
from relance.db import engine_for
from relance.migrate import downgrade, upgrade

TABLES = {
    "contacts",
    "categories",
    "contact_opt_changes",
    "contact_categories",
    "campaigns",
    "campaign_categories",
    "campaign_contacts",
    "recipients",
    "messages",
    "inbound_events",
    "api_keys",
    "sender_pacing",
}


def test_migrate_twice_then_downgrade_base(database_url: str) -> None:
    upgrade(url=database_url)  # already at head: changes nothing
    upgrade(url=database_url)
    engine = engine_for(database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("recipients")}
    assert {"ix_recipients_campaign_state_id", "ix_recipients_open_windows"} <= indexes
    downgrade(database_url)
    engine.dispose()
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(url=database_url)
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_relance_migrate_on_new_sqlite_file(tmp_path: Path) -> None:
    env = {**os.environ, "RELANCE_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "relance", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "database is up to date" in proc.stdout
    engine = engine_for(f"sqlite:///{(tmp_path / 'data' / 'relance.db').resolve()}")
    assert set(inspect(engine).get_table_names()) >= TABLES


def _insert_campaign(url: str, status: str, completed_at: str | None) -> None:
    with engine_for(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO campaigns (name, message_1, reply_window_seconds, status, "
                "placeholder_defaults, created_at, updated_at, completed_at) VALUES "
                "('c', 'hi', 60, :status, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, "
                + ("CURRENT_TIMESTAMP" if completed_at else "NULL")
                + ")"
            ),
            {"status": status},
        )


def test_completed_campaign_needs_completed_at(database_url: str) -> None:
    """R1.3 at the database level: the CHECK refuses a completed campaign without its time."""
    with pytest.raises(IntegrityError, match="completed_has_completed_at"):
        _insert_campaign(database_url, "completed", None)
    _insert_campaign(database_url, "completed", "now")
    _insert_campaign(database_url, "sending", None)
    with engine_for(database_url).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM campaigns")).scalar_one() == 2
    with pytest.raises(IntegrityError, match="status_valid"):
        _insert_campaign(database_url, "finished", "now")


def test_migrations_match_the_models(database_url: str) -> None:
    """Alembic's autogenerate finds nothing to add: the migrations build exactly the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from relance.models import Base

    with engine_for(database_url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with engine_for(url).connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql))]


def test_0004_keeps_one_message_1_per_recipient_both_ways(database_url: str) -> None:
    """Recipients launched before 0004 have their Message 1 row: the upgrade stamps them, so no
    claim creates a second one. The downgrade gives the recipients still waiting for theirs a
    pending row, as the launch used to, so that the previous code sends them."""
    from sqlalchemy.orm import Session

    from relance.models import utcnow

    url = database_url
    downgrade(url, "0003")
    _insert_campaign(url, "sending", None)
    with engine_for(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (phone, first_name, last_name, attributes, created_at, "
                "updated_at) VALUES ('+33600000001', 'a', 'b', '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP), ('+33600000002', 'c', 'd', '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO recipients (campaign_id, contact_id, state) "
                "SELECT 1, id, 'queued' FROM contacts"
            )
        )
        conn.execute(
            text(
                "INSERT INTO messages (recipient_id, campaign_id, kind, priority, status, "
                "provider, attempts, created_at) SELECT id, 1, 'message_1', 1, 'pending', "
                "'simulator', 0, CURRENT_TIMESTAMP FROM recipients"
            )
        )
    upgrade(url=url)
    stamped = _rows(url, "SELECT message_1_created_at IS NOT NULL FROM recipients")
    assert stamped == [(True,), (True,)]
    with Session(engine_for(url)) as session:
        claimed = claims.claim_messages(session, utcnow(), 10, provider="simulator")
        session.commit()
    assert len(claimed) == 2  # the two existing rows, none created
    assert _rows(url, "SELECT count(*), min(status), max(status) FROM messages") == [
        (2, "sending", "sending")
    ]

    # A recipient launched under 0004 and not yet claimed gets its pending row on the way down.
    with engine_for(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (phone, first_name, last_name, attributes, created_at, "
                "updated_at) VALUES ('+33600000003', 'e', 'f', '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO recipients (campaign_id, contact_id, state) "
                "SELECT 1, id, 'queued' FROM contacts WHERE phone = '+33600000003'"
            )
        )
    downgrade(url, "0003")
    assert _rows(
        url, "SELECT kind, status, count(*) FROM messages GROUP BY kind, status ORDER BY status"
    ) == [("message_1", "pending", 1), ("message_1", "sending", 2)]
    upgrade(url=url)
    assert _rows(url, "SELECT count(*) FROM recipients WHERE message_1_created_at IS NULL") == [
        (0,)
    ]


def test_sqlite_table_rebuilds_keep_the_rows_that_refer_to_them(database_url: str) -> None:
    """0003 rebuilds ``messages`` on SQLite (batch mode: copy, DROP, rename). With foreign keys
    on, that DROP ran ``inbound_events``' ON DELETE SET NULL and unlinked every stored event
    from its message; the migrations now run with them off, checked before each commit."""
    url = database_url
    downgrade(url, "0002")
    _insert_campaign(url, "sending", None)
    with engine_for(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (phone, first_name, last_name, attributes, created_at, "
                "updated_at) VALUES ('+33600000001', 'a', 'b', '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text("INSERT INTO recipients (campaign_id, contact_id, state) VALUES (1, 1, 'queued')")
        )
        conn.execute(
            text(
                "INSERT INTO messages (recipient_id, campaign_id, kind, priority, status, "
                "provider, attempts, created_at) VALUES (1, 1, 'message_1', 1, 'sent', "
                "'simulator', 1, CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO inbound_events (provider, dedup_key, kind, payload, received_at, "
                "message_id, recipient_id, matched) VALUES ('meta', 'k', 'status', '{}', "
                "CURRENT_TIMESTAMP, 1, 1, true)"
            )
        )
    upgrade(url=url)
    assert _rows(url, "SELECT message_id, recipient_id FROM inbound_events") == [(1, 1)]
    assert _rows(url, "SELECT count(*) FROM messages") == [(1,)]


def _seed_0004(url: str) -> None:
    """At 0004: a completed campaign, two contacts with a recipient, a message and an event."""
    _insert_campaign(url, "completed", "now")
    with engine_for(url).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO contacts (phone, first_name, last_name, attributes, created_at, "
                "updated_at) VALUES ('+33600000001', 'a', 'b', '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP), ('+33600000002', 'c', 'd', '{}', CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO recipients (campaign_id, contact_id, state) "
                "SELECT 1, id, 'done' FROM contacts ORDER BY id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO messages (recipient_id, campaign_id, kind, priority, status, "
                "provider, attempts, created_at) SELECT id, 1, 'message_1', 1, 'sent', "
                "'simulator', 1, CURRENT_TIMESTAMP FROM recipients ORDER BY id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO inbound_events (provider, dedup_key, kind, payload, received_at, "
                "message_id, recipient_id, matched) SELECT 'meta', 'k' || id, 'status', '{}', "
                "CURRENT_TIMESTAMP, id, recipient_id, true FROM messages ORDER BY id"
            )
        )


def test_0005_recipients_outlive_their_contact_and_the_downgrade_drops_anonymised_ones(
    database_url: str,
) -> None:
    """Up: no row lost (on SQLite the recipients table is rebuilt: with foreign keys on, that
    used to delete every message and unlink every event), and deleting a contact now leaves
    its recipient with contact_id NULL. Down: the anonymised recipients go with their
    messages, their events are unlinked, and the rest is as it was."""
    url = database_url
    downgrade(url, "0004")
    _seed_0004(url)
    links = "SELECT id, message_id, recipient_id FROM inbound_events ORDER BY id"
    events = _rows(url, links)
    assert events == [(1, 1, 1), (2, 2, 2)]

    upgrade(url=url)
    assert _rows(url, "SELECT id, contact_id FROM recipients ORDER BY id") == [(1, 1), (2, 2)]
    assert _rows(url, "SELECT count(*) FROM messages") == [(2,)]
    assert _rows(url, links) == events
    indexes = {ix["name"] for ix in inspect(engine_for(url)).get_indexes("recipients")}
    assert {"ix_recipients_message_1_due", "ix_recipients_open_windows"} <= indexes
    if url.startswith("sqlite"):  # foreign keys are back on for whoever gets the connection
        assert _rows(url, "PRAGMA foreign_keys") == [(1,)]
        upgrade(url=url)  # nothing to do: its reads must not keep them off either
        assert _rows(url, "PRAGMA foreign_keys") == [(1,)]
    with engine_for(url).begin() as conn:
        conn.execute(text("DELETE FROM contacts WHERE id = 1"))
    assert _rows(url, "SELECT id, contact_id FROM recipients ORDER BY id") == [(1, None), (2, 2)]
    assert _rows(url, "SELECT count(*) FROM messages") == [(2,)]

    downgrade(url, "0004")
    assert _rows(url, "SELECT id, contact_id FROM recipients") == [(2, 2)]
    assert _rows(url, "SELECT id, recipient_id FROM messages") == [(2, 2)]
    assert _rows(url, links) == [(1, None, None), (2, 2, 2)]
    with pytest.raises(IntegrityError), engine_for(url).begin() as conn:
        conn.execute(
            text("INSERT INTO recipients (campaign_id, contact_id, state) VALUES (1, NULL, 'done')")
        )
    # Deleting a contact cascades again, as 0004's code expects.
    with engine_for(url).begin() as conn:
        conn.execute(text("DELETE FROM contacts WHERE id = 2"))
    assert _rows(url, "SELECT count(*) FROM recipients") == [(0,)]
    upgrade(url=url)
