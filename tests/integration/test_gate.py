"""The front door (relance.gate) through the app, on SQLite and PostgreSQL.

Keys are checked before a body is read (401 before 413 or 422), bodies are capped by their
Content-Length and while they stream, and a write carried by the session cookie alone must come
from relance's own origin (PUBLIC_URL). Memory under real 300 MB bodies is measured on a real
server in tests/e2e/test_server_limits.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from relance.api import create_app
from relance.config import Settings, get_settings, load_settings
from relance.gate import SESSION_COOKIE
from tests.support.api import PASSWORD, new_api_key, new_user, row_counts

BODY_CAP = 4096
IMPORT_CAP = 16384
PUBLIC = "https://relance.example.com"
TABLES = ("contacts", "categories", "campaigns", "contact_categories")


@pytest.fixture
def capped(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """The test settings with small body caps and a public HTTPS URL."""
    monkeypatch.setenv("MAX_BODY_BYTES", str(BODY_CAP))
    monkeypatch.setenv("MAX_IMPORT_BYTES", str(IMPORT_CAP))
    monkeypatch.setenv("PUBLIC_URL", PUBLIC)
    get_settings.cache_clear()
    yield load_settings()
    get_settings.cache_clear()


@pytest.fixture
def key(capped: Settings) -> str:
    return new_api_key(capped)


@pytest.fixture
def anonymous(capped: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(capped), base_url=PUBLIC, follow_redirects=False) as client:
        yield client


LOGIN = {"email": "ada@example.com", "password": PASSWORD}


@pytest.fixture
def browser(anonymous: TestClient, capped: Settings) -> TestClient:
    """Signed in through the login form: the session id travels in the cookie only."""
    new_user(capped, LOGIN["email"])
    r = anonymous.post("/login", data=LOGIN, headers={"Origin": PUBLIC})
    assert r.status_code == 303, r.text
    return anonymous


def chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    """A body without Content-Length: the client sends it chunked."""
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


# Keys before bodies --------------------------------------------------------------------------


def test_without_a_key_the_answer_is_401_whatever_the_body(
    anonymous: TestClient, capped: Settings
) -> None:
    before = row_counts(capped, *TABLES)
    for body in (b"x" * (BODY_CAP * 4), b"{not json", b'{"phone": 12}'):
        r = anonymous.post(
            "/api/contacts", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 401, (body[:20], r.text)
        assert r.json()["detail"].startswith("not signed in")
    r = anonymous.post("/api/contacts/import", content=chunks(IMPORT_CAP * 2))
    assert r.status_code == 401
    r = anonymous.post("/api/contacts", json={}, headers={"Authorization": "Bearer rl_wrong"})
    assert (r.status_code, r.json()["detail"]) == (401, "invalid API key")
    assert r.headers["www-authenticate"] == "Bearer"
    assert row_counts(capped, *TABLES) == before


# Body caps -----------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_413_by_length_and_while_streaming(
    anonymous: TestClient, key: str, capped: Settings
) -> None:
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    before = row_counts(capped, *TABLES)
    padded = b'{"phone": "+33612345678", "first_name": "' + b"a" * BODY_CAP + b'"}'
    for content in (padded, chunks(BODY_CAP + 1)):
        r = anonymous.post("/api/contacts", content=content, headers=auth)
        assert r.status_code == 413, r.text
        assert r.json() == {"detail": f"request body larger than {BODY_CAP} bytes (MAX_BODY_BYTES)"}
    r = anonymous.post("/webhooks/simulator", content=chunks(BODY_CAP * 3))
    assert r.status_code == 413
    assert row_counts(capped, *TABLES) == before
    # Under the cap, the same route works.
    r = anonymous.post("/api/contacts", json={"phone": "+33612345678"}, headers=auth)
    assert r.status_code == 201, r.text


def test_the_csv_import_has_its_own_cap(anonymous: TestClient, key: str, capped: Settings) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    rows = "".join(f"+3361234{i:04d},N{i}\n" for i in range(300))  # about 6 KB: over MAX_BODY
    csv = "phone,first_name\n" + rows
    assert BODY_CAP < len(csv) < IMPORT_CAP
    r = anonymous.post("/api/contacts/import", files={"file": ("c.csv", csv)}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == 300
    big = "phone,first_name\n" + rows * 4
    r = anonymous.post("/api/contacts/import", files={"file": ("c.csv", big)}, headers=auth)
    assert r.status_code == 413
    assert r.json()["detail"] == f"request body larger than {IMPORT_CAP} bytes (MAX_IMPORT_BYTES)"


# Cookies and cross-site writes ----------------------------------------------------------------


def test_cookie_flags_follow_public_url(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for public, secure in (("https://r.example", True), ("http://127.0.0.1:8000", False)):
        monkeypatch.setenv("PUBLIC_URL", public)
        get_settings.cache_clear()
        s = load_settings()
        new_user(s, f"ada{int(secure)}@example.com")
        login = {"email": f"ada{int(secure)}@example.com", "password": PASSWORD}
        # uvicorn behind a TLS proxy sees http: the client below talks plain http on purpose.
        with TestClient(create_app(s), base_url="http://internal", follow_redirects=False) as c:
            r = c.post("/login", data=login, headers={"Origin": public})
            assert r.status_code == 303, r.text
            cookie = r.headers["set-cookie"]
            assert ("Secure" in cookie) is secure, (public, cookie)
            assert "HttpOnly" in cookie
    get_settings.cache_clear()


def test_cookie_writes_from_another_origin_are_refused_and_change_nothing(
    browser: TestClient, capped: Settings
) -> None:
    before = row_counts(capped, *TABLES)
    csv = "phone\n+33612345678\n"
    attempts = [
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "null"},
        {},  # a write that does not say where it comes from
        {"Origin": "http://relance.example.com"},  # the same host without TLS is another origin
    ]
    for headers in attempts:
        for method, path, kwargs in (
            ("POST", "/api/contacts/import", {"files": {"file": ("c.csv", csv)}}),
            ("POST", "/api/categories", {"json": {"name": "evil"}}),
            ("PATCH", "/api/categories/1", {"json": {"name": "evil"}}),
            ("DELETE", "/api/contacts/1", {}),
            ("POST", "/logout", {}),
        ):
            r = browser.request(method, path, headers=headers, **kwargs)
            assert r.status_code == 403, (headers, method, path, r.text)
            assert "origin" in r.json()["detail"].lower()
    assert row_counts(capped, *TABLES) == before
    assert browser.cookies.get(SESSION_COOKIE)  # the forged logout did not sign anyone out
    # From the site itself, the same writes work.
    ok = browser.post("/api/categories", json={"name": "ours"}, headers={"Origin": PUBLIC})
    assert ok.status_code == 201, ok.text
    referer = {"Referer": PUBLIC + "/contacts"}
    r = browser.post("/api/contacts/import", files={"file": ("c.csv", csv)}, headers=referer)
    assert r.status_code == 200, r.text


def test_reads_and_bearer_requests_are_not_affected_by_the_origin(
    anonymous: TestClient, browser: TestClient, key: str
) -> None:
    evil = {"Origin": "https://evil.example"}
    assert browser.get("/api/categories", headers=evil).status_code == 200
    anonymous.cookies.clear()
    bearer = {**evil, "Authorization": f"Bearer {key}"}
    r = anonymous.post("/api/categories", json={"name": "by key"}, headers=bearer)
    assert r.status_code == 201, r.text


def test_a_forged_login_is_refused(anonymous: TestClient, capped: Settings) -> None:
    """Login CSRF: another site must not sign a browser in to the attacker's account."""
    new_user(capped, LOGIN["email"])
    r = anonymous.post("/login", data=LOGIN, headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert SESSION_COOKIE not in anonymous.cookies
