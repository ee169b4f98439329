"""Shared fixtures: real PostgreSQL and Redis, fresh Alembic-migrated schemas, isolation.

PostgreSQL: ``TEST_DATABASE_URL`` (default the local ``test`` database's server); each run
creates its own database, migrates it with Alembic, and drops it at the end.
Redis: ``TEST_REDIS_URL`` (default redis://127.0.0.1:6379/15; one database per xdist worker).
When ``CI`` is set, a missing server fails the run; elsewhere those tests skip, saying why.
Tests under tests/integration are marked ``integration``, under tests/e2e ``e2e``
(``pytest -m "not e2e"`` runs the rest).
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from relance.config import Settings, get_settings, load_settings
from relance.db import engine_for, session_factory
from relance.migrate import upgrade
from tests.support.stack import UNPACED

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _redis_url() -> str:
    """TEST_REDIS_URL; under pytest-xdist each worker flushes a database of its own (gw0: 15,
    gw1: 14...)."""
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    base, _, db = url.rpartition("/")
    return f"{base}/{int(db) - int(worker[2:])}"


REDIS_URL = _redis_url()
IN_CI = bool(os.environ.get("CI"))
ALL_TABLES = (
    "webhook_inbox, inbound_events, messages, recipients, campaign_contacts, "
    "campaign_categories, contact_opt_changes, campaign_senders, campaigns, senders, "
    "contact_categories, contacts, categories, api_keys, sender_pacing, heartbeats, "
    "metric_samples, user_sessions, login_throttle, audit_events, users, suppressed_phones"
)


MARKERS = {"integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            folder = item.path.relative_to(here).parts[0]
            if folder in MARKERS:
                item.add_marker(MARKERS[folder])


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url.replace("postgresql+psycopg", "postgresql"))
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def require_server(name: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}"
    if IN_CI:
        pytest.fail(f"{message} (CI is set: a missing server is a failure)", pytrace=False)
    pytest.skip(f"{message}; start it to run this test")


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A brand-new PostgreSQL database for this test run, migrated with Alembic."""
    require_server("PostgreSQL", PG_URL, 5432)
    name = f"relance_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url=url)
    try:
        yield url
    finally:
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(url=f"sqlite:///{path}")
    engine_for(f"sqlite:///{path}").dispose()
    return path


def _truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {ALL_TABLES} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, sqlite_template: Path, tmp_path: Path
) -> Iterator[str]:
    """Each test that takes it runs on SQLite and on PostgreSQL, on an empty migrated schema."""
    if request.param == "sqlite":
        path = tmp_path / "relance.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite:///{path}"
        yield url
        engine_for(url).dispose()
    else:
        url = request.getfixturevalue("pg_database_url")
        _truncate(engine_for(url))
        yield url


@pytest.fixture
def pg_url(pg_database_url: str) -> str:
    """PostgreSQL only (concurrency tests, CHECK constraints), on an empty schema."""
    _truncate(engine_for(pg_database_url))
    return pg_database_url


@pytest.fixture
def redis_url() -> Iterator[str]:
    require_server("Redis", REDIS_URL, 6379)
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Settings for one test, also what get_settings() returns during it."""
    yield from _settings_for(database_url, tmp_path, monkeypatch)


@pytest.fixture
def pg_settings(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    yield from _settings_for(pg_url, tmp_path, monkeypatch)


def _settings_for(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    env = {
        "DATABASE_URL": url,
        "RELANCE_DATA_DIR": str(tmp_path / "data"),
        "BROKER_URL": "memory://",
        **UNPACED,
        "META_APP_SECRET": "test-app-secret",
        # The request applies its webhook, so a test reads what it did in the answer; the
        # inbox path (PostgreSQL's default) has its own tests (test_webhook_inbox.py).
        "WEBHOOK_INGEST": "inline",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield load_settings()
    get_settings.cache_clear()


@pytest.fixture
def session(settings: Settings) -> Iterator[Session]:
    s = session_factory(settings)()
    try:
        yield s
    finally:
        s.rollback()
        s.close()
