"""After-commit work and savepoints (relance.db), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relance.config import Settings
from relance.db import on_commit, savepoint, session_scope
from relance.models import Category


def _violate_not_null(session: Session) -> None:
    session.execute(text("INSERT INTO categories (name, description) VALUES (NULL, NULL)"))


def test_work_queued_in_savepoints_runs_at_the_real_commit_unless_its_savepoint_failed(
    session: Session,
) -> None:
    ran: list[str] = []
    session.execute(text("SELECT 1"))
    on_commit(session, lambda: ran.append("outside"))
    with savepoint(session):
        on_commit(session, lambda: ran.append("released"))
    assert ran == []  # releasing a savepoint commits nothing yet

    with pytest.raises(IntegrityError), savepoint(session):
        on_commit(session, lambda: ran.append("refused"))
        _violate_not_null(session)
    with savepoint(session):
        on_commit(session, lambda: ran.append("after"))
    assert ran == []

    session.commit()

    assert ran == ["outside", "released", "after"]


def test_a_rollback_drops_every_queued_work(session: Session) -> None:
    ran: list[str] = []
    with savepoint(session):
        on_commit(session, lambda: ran.append("released"))
    on_commit(session, lambda: ran.append("outside"))

    session.rollback()
    session.commit()

    assert ran == []


def test_a_failing_follow_up_neither_fails_the_commit_nor_skips_the_others(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Publishing a task while the broker is down must not turn the committed unit of work into
    an error (its caller would do the work again) nor skip what comes after it."""
    ran: list[str] = []

    def broker_down() -> None:
        raise ConnectionRefusedError("the broker is down")

    with session_scope(settings) as session:
        session.add(Category(name="kept"))
        on_commit(session, broker_down)
        on_commit(session, lambda: ran.append("after"))
    assert ran == ["after"]
    with session_scope(settings) as session:
        assert session.scalar(select(Category.id).where(Category.name == "kept")) is not None
    assert "follow-up failed" in caplog.text and "broker is down" in caplog.text
