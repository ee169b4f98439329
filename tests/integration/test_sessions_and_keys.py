"""Sessions and API keys on SQLite and PostgreSQL: expiry, logout, revocation, roles, throttle."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from relance.accounts import sessions
from relance.accounts.roles import Role
from relance.accounts.signin import TooManyAttempts, authenticate
from relance.accounts.throttle import FREE_FAILURES, MAX_WAIT
from relance.api import create_app
from relance.config import Settings
from relance.db import session_scope
from relance.gate import SESSION_COOKIE
from relance.models import User, UserSession, utcnow
from tests.support.api import PASSWORD, new_api_key, new_user, sign_in

ADMIN = "admin@example.com"
OPERATOR = "op@example.com"


def _client(settings: Settings) -> TestClient:
    client = TestClient(create_app(settings), follow_redirects=False)
    client.headers["Origin"] = settings.effective_public_url
    return client


@pytest.fixture
def admin(settings: Settings) -> Iterator[TestClient]:
    new_user(settings, ADMIN, Role.ADMIN)
    with _client(settings) as client:
        sign_in(client, ADMIN)
        yield client


@pytest.fixture
def operator(settings: Settings) -> Iterator[TestClient]:
    new_user(settings, OPERATOR, Role.OPERATOR)
    with _client(settings) as client:
        sign_in(client, OPERATOR)
        yield client


def _user(settings: Settings, email: str) -> User:
    with session_scope(settings) as session:
        user = session.scalar(select(User).where(User.email == email))
        assert user is not None
        session.expunge(user)
        return user


# Sessions -------------------------------------------------------------------------------------


def test_the_cookie_holds_a_random_id_and_logout_deletes_the_session(
    admin: TestClient, settings: Settings
) -> None:
    token = admin.cookies[SESSION_COOKIE]
    with session_scope(settings) as session:
        row = session.scalar(select(UserSession))
        assert row is not None
        assert token not in row.id_hash  # only its hash is kept
        assert row.expires_at - row.created_at == timedelta(seconds=settings.session_max_seconds)
    assert admin.get("/api/me").json()["email"] == ADMIN
    assert admin.post("/logout").status_code == 303
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(UserSession)) == 0
    # The same cookie, replayed after logout (stolen before it), is refused.
    with _client(settings) as thief:
        thief.cookies.set(SESSION_COOKIE, token)
        assert thief.get("/api/me").status_code == 401
        assert thief.get("/").status_code == 303


def test_sessions_end_when_idle_too_long_or_past_their_absolute_limit(
    settings: Settings,
) -> None:
    new_user(settings, ADMIN)
    user = _user(settings, ADMIN)
    start = utcnow()
    idle = timedelta(seconds=settings.session_idle_seconds)
    with session_scope(settings) as session:
        token = sessions.open_session(session, settings, user, now=start)
    with session_scope(settings) as session:
        # Active: each request pushes the idle limit back...
        for step in range(1, 4):
            at = start + step * (idle - timedelta(seconds=1))
            assert sessions.resolve(session, settings, token, now=at) is not None
        # ...then nothing for longer than the idle limit ends it.
        assert sessions.resolve(session, settings, token, now=at + idle) is None
    with session_scope(settings) as session:
        token = sessions.open_session(session, settings, user, now=start)
    absolute = timedelta(seconds=settings.session_max_seconds)
    with session_scope(settings) as session:
        at = start
        while at + idle / 2 < start + absolute:
            at += idle / 2
            assert sessions.resolve(session, settings, token, now=at) is not None
        assert sessions.resolve(session, settings, token, now=start + absolute) is None


def test_an_admin_ends_sessions_disables_and_resets_with_immediate_effect(
    admin: TestClient, operator: TestClient, settings: Settings
) -> None:
    op = _user(settings, OPERATOR)
    assert operator.get("/api/campaigns").status_code == 200
    r = admin.delete(f"/api/users/{op.id}/sessions")
    assert r.json() == {"sessions_ended": 1}
    assert operator.get("/api/campaigns").status_code == 401
    sign_in(operator, OPERATOR)
    key = operator.post("/api/keys", json={"name": "op key"}).json()["key"]
    bearer = {"Authorization": f"Bearer {key}"}
    with _client(settings) as api:
        assert api.get("/api/campaigns", headers=bearer).status_code == 200
        # Disabled: their session and their keys stop at once; enabled, the keys work again.
        r = admin.patch(f"/api/users/{op.id}", json={"disabled": True})
        assert r.status_code == 200 and r.json()["disabled_at"], r.text
        assert operator.get("/api/campaigns").status_code == 401
        assert api.get("/api/campaigns", headers=bearer).status_code == 401
        r = operator.post("/login", data={"email": OPERATOR, "password": PASSWORD})
        assert r.status_code == 401
        admin.patch(f"/api/users/{op.id}", json={"disabled": False})
        assert api.get("/api/campaigns", headers=bearer).status_code == 200
    # A reset password: the old one fails, the made-up one works, the sessions ended.
    sign_in(operator, OPERATOR)
    r = admin.post(f"/api/users/{op.id}/password", json={})
    made_up = r.json()["password"]
    assert r.json()["sessions_ended"] == 1 and len(made_up) >= 10
    assert operator.get("/api/me").status_code == 401
    assert (
        operator.post("/login", data={"email": OPERATOR, "password": PASSWORD}).status_code == 401
    )
    sign_in(operator, OPERATOR, made_up)


def test_the_last_admin_cannot_be_demoted_nor_disabled(
    admin: TestClient, settings: Settings
) -> None:
    me = admin.get("/api/me").json()["user_id"]
    for change in ({"role": "operator"}, {"disabled": True}):
        r = admin.patch(f"/api/users/{me}", json=change)
        assert r.status_code == 409, r.text
        assert "last admin" in r.json()["detail"]
    r = admin.post("/api/users", json={"email": "second@example.com", "role": "admin"})
    assert r.status_code == 201
    assert admin.patch(f"/api/users/{me}", json={"role": "operator"}).status_code == 200
    # Demoted, the session now acts as an operator: users are out of reach.
    assert admin.get("/api/users").status_code == 403


def test_users_are_validated_and_unique(admin: TestClient) -> None:
    for body, field in (
        ({"email": "not-an-email", "role": "viewer"}, "email"),
        ({"email": "a@example.com", "role": "king"}, "role"),
        ({"email": "a@example.com", "role": "viewer", "password": "short"}, "password"),
        ({"email": "a@example.com", "role": "viewer", "extra": 1}, "extra"),
    ):
        r = admin.post("/api/users", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["field"] == field
    assert (
        admin.post("/api/users", json={"email": "A@example.com", "role": "viewer"}).status_code
        == 201
    )
    r = admin.post("/api/users", json={"email": "a@EXAMPLE.com ", "role": "viewer"})
    assert r.status_code == 409


# Sign-in throttle ----------------------------------------------------------------------------


def test_failures_are_slowed_per_account_and_per_address_never_for_ever(
    settings: Settings,
) -> None:
    new_user(settings, ADMIN)
    start = utcnow()
    with session_scope(settings) as session:
        for _ in range(FREE_FAILURES):
            assert authenticate(session, ADMIN, "wrong password", "10.0.0.1", start) is None
        # The account waits, even with the right password, even from another address...
        with pytest.raises(TooManyAttempts):
            authenticate(session, ADMIN, PASSWORD, "10.0.0.2", start)
        # ...and the guessing address waits for any account.
        with pytest.raises(TooManyAttempts):
            authenticate(session, "other@example.com", "x", "10.0.0.1", start)
        # The owner is back in after MAX_WAIT at most; success clears the account's count.
        assert authenticate(session, ADMIN, PASSWORD, "10.0.0.2", start + MAX_WAIT) is not None
        assert authenticate(session, ADMIN, PASSWORD, "10.0.0.3", start + MAX_WAIT) is not None


def test_the_login_form_answers_429_when_throttled(settings: Settings) -> None:
    new_user(settings, ADMIN)
    with _client(settings) as browser:
        for _ in range(FREE_FAILURES):
            r = browser.post("/login", data={"email": ADMIN, "password": "wrong password"})
            assert r.status_code == 401
        r = browser.post("/login", data={"email": ADMIN, "password": PASSWORD})
        assert r.status_code == 429
        assert "Too many failed sign-ins" in r.text
        assert SESSION_COOKIE not in browser.cookies


# API keys ------------------------------------------------------------------------------------


def test_a_revoked_key_fails_on_the_next_request(admin: TestClient, settings: Settings) -> None:
    created = admin.post("/api/keys", json={"name": "ci"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["key"].startswith(body["prefix"]) and body["role"] == "admin"
    listed = admin.get("/api/keys").json()["items"]
    assert [k["name"] for k in listed] == ["ci"]
    assert "key" not in listed[0]  # the secret is shown once
    bearer = {"Authorization": f"Bearer {body['key']}"}
    with _client(settings) as api:
        assert api.get("/api/campaigns", headers=bearer).status_code == 200
        assert api.get("/api/keys", headers=bearer).json()["items"][0]["last_used_at"]
        r = admin.delete(f"/api/keys/{body['prefix']}")
        assert r.status_code == 200 and r.json()["revoked_at"]
        r = api.get("/api/campaigns", headers=bearer)
        assert r.status_code == 401 and r.json()["detail"] == "invalid API key"


def test_keys_never_exceed_their_owner_nor_their_maker(
    admin: TestClient, operator: TestClient, settings: Settings
) -> None:
    r = operator.post("/api/keys", json={"name": "too high", "role": "admin"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "role"
    viewer_key = operator.post("/api/keys", json={"name": "v", "role": "viewer"}).json()
    assert viewer_key["role"] == "viewer"
    bearer = {"Authorization": f"Bearer {viewer_key['key']}"}
    with _client(settings) as api:
        # A viewer key cannot mint a stronger key, nor write.
        r = api.post("/api/keys", json={"name": "escalate", "role": "operator"}, headers=bearer)
        assert r.status_code == 422, r.text
        r = api.post("/api/contacts", json={"phone": "+33612345678"}, headers=bearer)
        assert r.status_code == 403 and "'manage_contacts'" in r.json()["detail"]
        # An admin key of a demoted owner does only what the owner does now.
        admin_key = new_api_key(settings, "boss", Role.ADMIN)
        boss = _user(settings, "boss-admin@example.com")
        boss_bearer = {"Authorization": f"Bearer {admin_key}"}
        assert api.get("/api/users", headers=boss_bearer).status_code == 200
        admin.patch(f"/api/users/{boss.id}", json={"role": "viewer"})
        assert api.get("/api/users", headers=boss_bearer).status_code == 403
        assert api.get("/api/me", headers=boss_bearer).json()["role"] == "viewer"
    # Operators see and revoke only their own keys; admins see all of them.
    mine = {k["id"] for k in operator.get("/api/keys").json()["items"]}
    everyone = {k["id"] for k in admin.get("/api/keys").json()["items"]}
    assert mine < everyone
    other = min(everyone - mine)
    r = operator.delete(f"/api/keys/{other}")
    assert r.status_code == 403 and "'manage_keys'" in r.json()["detail"]
    r = operator.post("/api/keys", json={"name": "x", "user_id": _user(settings, ADMIN).id})
    assert r.status_code == 403
    r = admin.post("/api/keys", json={"name": "for op", "user_id": _user(settings, OPERATOR).id})
    assert r.status_code == 201 and r.json()["role"] == "operator"
