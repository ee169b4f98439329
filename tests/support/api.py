"""Helpers for API tests: an authenticated client, row counts, campaigns run over the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, table

from relance.accounts.keys import create_api_key
from relance.accounts.roles import Role
from relance.accounts.users import create_user
from relance.api import create_app
from relance.config import Settings
from relance.db import session_scope
from relance.processes import wait_until
from tests.support.engine import TEMPLATE

PASSWORD = "correct horse battery"


def new_api_key(settings: Settings, name: str = "tests", role: Role | None = None) -> str:
    """A key of the command line's admin account (or of a new user of ``role``)."""
    with session_scope(settings) as session:
        owner = None
        if role is not None:
            owner, _ = create_user(session, f"{name}-{role}@example.com", PASSWORD, role)
        return create_api_key(session, name, owner)


def new_user(settings: Settings, email: str, role: Role = Role.ADMIN) -> int:
    """A user who signs in with ``email`` and ``PASSWORD``; their id."""
    with session_scope(settings) as session:
        user, _ = create_user(session, email, PASSWORD, role)
        return user.id


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    """Sign the client in through the dashboard's form (it keeps the session cookie)."""
    r = client.post("/login", data={"email": email, "password": password, "next": "/"})
    assert r.status_code == 303, r.text


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


def campaign_for_phones(
    client: Any,
    phones: list[str],
    name: str,
    message_2: str | None = "Merci !",
    reply_window_seconds: int = 600,
) -> int:
    """Import these phones as one category (CSV), create a draft campaign on it; its id.

    ``client`` is a TestClient or an httpx.Client on a running server, with an API key.
    """
    csv = "phone,first_name,categories\n" + "".join(
        f"{p},C{i},{name}\n" for i, p in enumerate(phones)
    )
    r = client.post("/api/contacts/import", files={"file": ("c.csv", csv, "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == [], r.text
    categories = client.get("/api/categories", params={"limit": 1000}).json()["items"]
    category_id = next(c["id"] for c in categories if c["name"] == name)
    r = client.post(
        "/api/campaigns",
        json={
            "name": name,
            "message_1": "Bonjour {first_name}",
            "message_1_template": TEMPLATE,  # what the meta provider requires of Message 1
            "message_2": message_2,
            "category_ids": [category_id],
            "reply_window_seconds": reply_window_seconds,
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def reply_lag(client: Any, phones: list[str], name: str) -> float:
    """The longest a reply took, from its Message 1 being recorded (its window opening) to being
    applied, on this machine and stack now: a campaign of ``phones``, which all reply (or fail),
    with a window none can miss, run to completion. A reply window must outlast it."""
    window = 3600
    campaign_id = campaign_for_phones(client, phones, name, reply_window_seconds=window)
    assert client.post(f"/api/campaigns/{campaign_id}/launch").status_code == 200
    wait_completed(client, campaign_id, 120, interval=0.25)
    replied = client.get(
        f"/api/campaigns/{campaign_id}/recipients",
        params={"state": "message_2_sent", "limit": 1000},
    ).json()["items"]
    assert replied, "nobody replied: nothing measured"
    return max(
        (
            datetime.fromisoformat(r["replied_at"])
            - datetime.fromisoformat(r["window_closes_at"])
            + timedelta(seconds=window)
        ).total_seconds()
        for r in replied
    )


def wait_completed(client: Any, campaign_id: int, timeout: float, **wait: Any) -> dict[str, Any]:
    """Poll the campaign's stats until it is completed; they are returned."""

    def completed() -> dict[str, Any] | None:
        stats: dict[str, Any] = client.get(f"/api/campaigns/{campaign_id}/stats").json()
        return stats if stats["completed"] else None

    try:
        return wait_until(completed, timeout, f"campaign {campaign_id} to complete", **wait)
    except TimeoutError as exc:
        blocking = client.get(f"/api/campaigns/{campaign_id}/blocking").json()
        raise TimeoutError(f"{exc}\nstill blocking: {blocking}") from None
