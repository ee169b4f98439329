"""Helpers for API tests: an authenticated TestClient and row counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi.testclient import TestClient
from sqlalchemy import func, select, table

from relance.api import create_app
from relance.auth import create_api_key
from relance.config import Settings
from relance.db import session_scope


def new_api_key(settings: Settings, name: str = "tests") -> str:
    with session_scope(settings) as session:
        return create_api_key(session, name)


def api_client(settings: Settings) -> TestClient:
    """A TestClient on create_app() sending a freshly created API key."""
    client = TestClient(create_app(settings), raise_server_exceptions=True)
    client.headers["Authorization"] = f"Bearer {new_api_key(settings)}"
    return client


@contextmanager
def running_client(settings: Settings) -> Iterator[TestClient]:
    """api_client() with the app's startup and shutdown run around the block."""
    with api_client(settings) as client:
        yield client


def count_rows(settings: Settings, table_name: str) -> int:
    with session_scope(settings) as session:
        return session.scalar(select(func.count()).select_from(table(table_name))) or 0


def row_counts(settings: Settings, *table_names: str) -> dict[str, int]:
    """Row counts of several tables: compare before and after a rejected request."""
    return {name: count_rows(settings, name) for name in table_names}
