"""The audit log on SQLite and PostgreSQL: each action leaves one entry, who, what, on what,
from where; ``GET /api/audit`` filters and pages it; only admins read it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from relance.accounts.roles import Role
from relance.api import create_app
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.db import session_scope
from relance.deps import get_followups
from relance.providers.base import PermanentError
from tests.support.api import new_user, sign_in
from tests.support.engine import FakeProvider, phone, run_dispatch, seed_contacts

ADMIN = "admin@example.com"


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    new_user(settings, ADMIN, Role.ADMIN)
    with TestClient(create_app(settings), follow_redirects=False) as client:
        client.headers["Origin"] = settings.effective_public_url
        client.app.dependency_overrides[get_followups] = RecordingFollowups  # type: ignore[attr-defined]
        sign_in(client, ADMIN)
        yield client


def _log(client: TestClient, **filters: Any) -> list[dict[str, Any]]:
    r = client.get("/api/audit", params={"limit": 500, **filters})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_every_action_is_logged_once_with_who_what_and_where(
    admin: TestClient, settings: Settings
) -> None:
    with session_scope(settings) as session:
        category_id = seed_contacts(session, 3, category="clients")
    body = {"name": "P", "message_1": "Hi", "message_2": "Thanks", "category_ids": [category_id]}
    cid = admin.post("/api/campaigns", json=body).json()["id"]
    admin.patch(f"/api/campaigns/{cid}", json={"name": "P2"})
    assert admin.post(f"/api/campaigns/{cid}/launch").status_code == 200
    bad = phone(0)
    run_dispatch(
        settings,
        FakeProvider(fail=lambda m: PermanentError("131026", "no") if m.to == bad else None),
    )
    for step in ("pause", "resume", "retry-failed", "cancel"):
        assert admin.post(f"/api/campaigns/{cid}/{step}").status_code == 200, step
    assert admin.delete(f"/api/campaigns/{cid}").status_code == 204
    csv = f"phone,first_name\n{phone(50)},Ada\n"
    assert admin.post("/api/contacts/import", files={"file": ("c.csv", csv)}).status_code == 200
    contact = admin.get("/api/contacts", params={"limit": 1}).json()["items"][0]["id"]
    admin.patch(f"/api/contacts/{contact}", json={"first_name": "Bo"})
    assert admin.delete(f"/api/contacts/{contact}").status_code == 204
    user = admin.post("/api/users", json={"email": "op@example.com", "role": "operator"}).json()
    admin.patch(f"/api/users/{user['id']}", json={"role": "viewer"})
    admin.post(f"/api/users/{user['id']}/password", json={})
    admin.delete(f"/api/users/{user['id']}/sessions")
    key = admin.post("/api/keys", json={"name": "ci"}).json()
    admin.delete(f"/api/keys/{key['id']}")
    admin.post("/login", data={"email": ADMIN, "password": "not the password at all"})

    entries = _log(admin)
    actions = [e["action"] for e in reversed(entries)]
    assert actions == [
        "login.success",
        "campaign.create",
        "campaign.update",
        "campaign.launch",
        "campaign.pause",
        "campaign.resume",
        "campaign.retry",
        "campaign.cancel",
        "campaign.delete",
        "contacts.import",
        "contact.update",
        "contact.delete",
        "user.create",
        "user.update",
        "user.password_reset",
        "user.sessions_end",
        "key.create",
        "key.revoke",
        "login.failure",
    ]
    me = admin.get("/api/me").json()["user_id"]
    by_action = {e["action"]: e for e in entries}
    for action, entry in by_action.items():
        assert entry["address"] == "testclient", entry
        if action != "login.failure":
            assert (entry["actor"], entry["actor_label"]) == (f"user:{me}", ADMIN), entry
    assert by_action["login.failure"]["actor"] == "anonymous"
    assert by_action["login.failure"]["actor_label"] == ADMIN  # the email that was tried
    assert by_action["campaign.launch"]["target"] == f"campaign:{cid}"
    assert by_action["campaign.retry"]["detail"] == {"retried": 1}
    assert by_action["user.update"]["detail"]["fields"] == ["role"]
    assert by_action["key.create"]["target"] == f"key:{key['id']}"

    # Filters by actor, action and target; pages newest first.
    assert {e["action"] for e in _log(admin, action="campaign.pause")} == {"campaign.pause"}
    assert len(_log(admin, target=f"campaign:{cid}")) == 8
    assert len(_log(admin, actor=f"user:{me}")) == len(entries) - 1
    first = admin.get("/api/audit", params={"limit": 5}).json()
    second = admin.get("/api/audit", params={"limit": 5, "before": first["next"]}).json()
    ids = [e["id"] for e in first["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 10
    assert ids == [e["id"] for e in entries[:10]]


def test_a_key_is_named_in_the_log_and_only_admins_read_it(
    admin: TestClient, settings: Settings
) -> None:
    made = admin.post("/api/keys", json={"name": "crm", "role": "operator"}).json()
    bearer = {"Authorization": f"Bearer {made['key']}"}
    with TestClient(create_app(settings)) as api:
        r = api.post("/api/categories", json={"name": "vip"}, headers=bearer)
        assert r.status_code == 201
        r = api.get("/api/audit", headers=bearer)
        assert r.status_code == 403 and "'read_audit'" in r.json()["detail"]
    page = admin.get("/audit", params={"actor": f"key:{made['id']}"})
    assert page.status_code == 200
    assert "crm" in page.text
