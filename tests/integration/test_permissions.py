"""Every API route by every role: allowed, or 403 naming the permission, as the OpenAPI says.

The table is relance.accounts.roles; the routes name what they need (relance.deps.require).
A forbidden request is refused before its body or its path is looked at, and changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from relance.accounts.roles import Permission, Role, can
from relance.api import create_app, route_permissions
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.deps import get_followups
from tests.support.api import new_api_key, row_counts

# Routes any principal may call: about oneself.
FOR_ANYONE = {("GET", "/api/me"), ("POST", "/api/me/password")}
STREAMS = {("GET", "/api/campaigns/{campaign_id}/events")}  # an open stream: checked by read
TABLES = ("contacts", "categories", "campaigns", "users", "api_keys")
UNKNOWN_ID = "999999"


@pytest.fixture
def app_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=True) as client:
        client.app.dependency_overrides[get_followups] = RecordingFollowups  # type: ignore[attr-defined]
        yield client


def test_every_api_route_needs_a_permission_and_the_openapi_names_it(
    app_client: TestClient,
) -> None:
    app = app_client.app
    needed = route_permissions(app)  # type: ignore[arg-type]
    schema = app_client.get("/openapi.json").json()
    api_operations = {
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path.startswith("/api/")
        for method in operations
    }
    assert api_operations - FOR_ANYONE == set(needed)
    for (method, path), permission in needed.items():
        operation = schema["paths"][path][method.lower()]
        assert operation["x-permission"] == permission
        assert "403" in operation["responses"]
        assert Permission(permission) in Permission


@pytest.mark.parametrize("role", list(Role))
def test_each_role_is_allowed_exactly_what_the_table_gives_it(
    app_client: TestClient, settings: Settings, role: Role
) -> None:
    key = new_api_key(settings, "perm", role)
    auth = {"Authorization": f"Bearer {key}"}
    before = row_counts(settings, *TABLES)
    for (method, path), permission in route_permissions(app_client.app).items():  # type: ignore[arg-type]
        allowed = can(role, Permission(permission))
        if allowed and (method, path) in STREAMS:
            continue
        url = re.sub(r"\{[a-z_]+\}", UNKNOWN_ID, path)
        body: dict[str, object] | None = {} if method in ("POST", "PATCH") else None
        r = app_client.request(method, url, headers=auth, json=body)
        if allowed:
            assert r.status_code != 403, (role, method, path, r.text)
            assert r.status_code < 500
        else:
            assert r.status_code == 403, (role, method, path, r.text)
            assert f"'{permission}'" in r.json()["detail"], r.text
    for method, path in FOR_ANYONE:
        r = app_client.request(method, path, headers=auth, json={} if method == "POST" else None)
        assert r.status_code in (200, 422), (role, path, r.text)
    assert row_counts(settings, *TABLES) == before
