"""Engine, sessions and the unit of work, for PostgreSQL (psycopg 3) and SQLite alike."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import ARRAY, ColumnElement, Engine, any_, create_engine, event, literal
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.orm import QueryableAttribute, Session, sessionmaker

from relance.config import Settings, get_settings

log = logging.getLogger(__name__)
PENDING_KEY = "relance_pending"
AFTER_COMMIT = "after_commit"


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would defer it).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: several processes writing at once then
        # wait on busy_timeout instead of failing with "database is locked" on lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


_ENGINES: dict[str, Engine] = {}


def engine_for(url: str) -> Engine:
    if url not in _ENGINES:
        _ENGINES[url] = _create_engine(url)
    return _ENGINES[url]


def _create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def get_engine(settings: Settings | None = None) -> Engine:
    return engine_for((settings or get_settings()).effective_database_url)


@functools.cache
def _factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=engine_for(url), expire_on_commit=False)


def session_factory(settings: Settings | None = None) -> sessionmaker[Session]:
    return _factory((settings or get_settings()).effective_database_url)


def pending(session: Session, name: str) -> list[Any]:
    """A list of work the current transaction leaves for its commit, under ``name``.

    A rollback empties every such list; a savepoint's rollback (``savepoint``) cuts each back to
    what it held when the savepoint began, so only what was queued inside it is forgotten.
    """
    lists: dict[str, list[Any]] = session.info.setdefault(PENDING_KEY, {})
    return lists.setdefault(name, [])


def take_pending(session: Session, name: str) -> list[Any]:
    """Remove and return what is pending under ``name`` (when the transaction commits)."""
    lists: dict[str, list[Any]] = session.info.get(PENDING_KEY, {})
    return lists.pop(name, [])


def on_commit(session: Session, callback: Callable[[], Any]) -> None:
    """Run ``callback`` once this session's transaction commits; a rollback drops it."""
    pending(session, AFTER_COMMIT).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    """Run what waited for the commit, each on its own: the transaction is committed now.

    A callback that fails (publishing a follow-up task while the broker is down) is logged and
    skipped: raising here would turn a committed unit of work into an error (its caller would
    retry work already done) and skip the callbacks after it. Nothing is lost with it: the
    work is in the database, where the Beat's sweeps find it (the dispatcher claims pending
    messages, the status check runs over every sending campaign).
    """
    if session.in_nested_transaction():
        return  # a savepoint released: the work waits for the real commit
    for callback in take_pending(session, AFTER_COMMIT):
        try:
            callback()
        except Exception:
            log.warning(
                "after the commit, a follow-up failed; the Beat's sweeps will do its work",
                exc_info=True,
            )


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint rolled back: savepoint() drops the work queued inside it only
    session.info.pop(PENDING_KEY, None)


@contextmanager
def savepoint(session: Session) -> Iterator[None]:
    """A SAVEPOINT: an error rolls back to it and forgets the pending work queued inside."""
    lists: dict[str, list[Any]] = session.info.setdefault(PENDING_KEY, {})
    marks = {name: len(items) for name, items in lists.items()}
    try:
        with session.begin_nested():
            yield
    except BaseException:
        for name, items in lists.items():
            del items[marks.get(name, 0) :]
        raise


@contextmanager
def session_scope(settings: Settings | None = None) -> Iterator[Session]:
    """The unit of work: the entrypoint opens it, services flush, it commits once."""
    session = session_factory(settings)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Forget pooled connections (after a fork, a child must not share the parent's)."""
    for engine in _ENGINES.values():
        engine.dispose(close=False)


def is_postgresql(session: Session) -> bool:
    """Does the session talk to PostgreSQL (else SQLite: embedded mode)?"""
    return session.get_bind().dialect.name == "postgresql"


def conflict_insert(session: Session, table: Any) -> pg_dialect.Insert | sqlite_dialect.Insert:
    """An INSERT into ``table`` in the session's dialect, which takes ``ON CONFLICT``."""
    return pg_dialect.insert(table) if is_postgresql(session) else sqlite_dialect.insert(table)


def among(
    session: Session, column: ColumnElement[Any] | QueryableAttribute[Any], values: Iterable[Any]
) -> ColumnElement[bool]:
    """``column IN values``. PostgreSQL gets one array parameter (``= ANY``): the statement's
    text stays the same whatever the number of values (compiled once, never split again by
    the driver), where an IN of 10,000 values costs more to build than to run."""
    element = column.expression
    if is_postgresql(session):
        return element == any_(literal(list(values), ARRAY(element.type)))
    return element.in_(list(values))
