"""Alembic environment: the URL comes from the caller or from relance's settings."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext, MigrationInfo
from sqlalchemy import Connection

from relance.db import engine_for
from relance.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from relance.config import get_settings

    return get_settings().effective_database_url


@contextmanager
def _sqlite_foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: foreign keys off while the migrations run (each is checked before its commit).

    Batch mode rebuilds a table (copy, DROP, rename). With foreign keys on, that DROP runs
    the ON DELETE actions of every table referring to it: rebuilding ``recipients`` would
    delete every message, rebuilding ``messages`` unlinks every inbound event. The pragma
    is a no-op inside a transaction, so it is set on the driver connection before any
    (SQLite's own procedure for altering a table, lang_altertable.html, section 7).
    """
    if connection.dialect.name != "sqlite" or connection.in_transaction():
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        # Alembic commits each migration on SQLite: what may still be open holds only reads
        # (the version lookup), and inside it the pragma below would be ignored.
        if connection.in_transaction():
            connection.rollback()
        driver.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(
    ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]
) -> None:
    """Called inside each migration's transaction: a broken reference rolls it back."""
    assert ctx.connection is not None
    broken = ctx.connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"{step} broke foreign keys (table, rowid, parent, fk): {broken}")


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=sqlite,
        compare_type=True,
        on_version_apply=_check_foreign_keys if sqlite else None,
    )
    with _sqlite_foreign_keys_off(connection), context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    with engine_for(_url()).connect() as connection:
        _run(connection)


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
