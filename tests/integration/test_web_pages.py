"""The dashboard's pages through the app on SQLite and PostgreSQL: sign-in, pages, helpers, SSE."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from relance.api import create_app
from relance.campaigns.answers import opt_in, opt_out
from relance.campaigns.domain import OptSource
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.db import session_scope
from relance.deps import get_followups
from relance.gate import SESSION_COOKIE
from relance.models import Contact
from relance.providers.base import PermanentError
from tests.support.api import PASSWORD, new_user
from tests.support.engine import FakeProvider, make_campaign, phone, run_dispatch, seed_contacts

PAGES = ("/", "/campaigns/new", "/contacts")


EMAIL = "ada@example.com"


@pytest.fixture
def user(settings: Settings) -> int:
    return new_user(settings, EMAIL)


@pytest.fixture
def anonymous(settings: Settings) -> Iterator[TestClient]:
    """A browser on relance's own pages, without the cookie; redirects are checked, not followed."""
    with TestClient(create_app(settings), follow_redirects=False) as client:
        client.headers["Origin"] = settings.effective_public_url
        client.app.dependency_overrides[get_followups] = RecordingFollowups  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def browser(anonymous: TestClient, user: int) -> TestClient:
    """A signed-in browser: a session id only in the cookie, never a key in a header."""
    r = anonymous.post("/login", data={"email": EMAIL, "password": PASSWORD, "next": "/"})
    assert r.status_code == 303
    assert "authorization" not in anonymous.headers
    return anonymous


def test_login_with_bad_credentials_shows_the_error_and_sets_no_cookie(
    anonymous: TestClient, user: int
) -> None:
    for email, password in (
        (EMAIL, "not the password"),
        ("nobody@example.com", PASSWORD),
        ("", ""),
    ):
        form = {"email": email, "password": password, "next": "/contacts"}
        r = anonymous.post("/login", data=form)
        assert r.status_code == 401
        assert "This email and password do not match an account." in r.text
        assert 'value="/contacts"' in r.text  # the form keeps where to go next
        assert "set-cookie" not in r.headers
    assert SESSION_COOKIE not in anonymous.cookies


def test_login_sets_an_httponly_session_cookie_and_redirects(
    anonymous: TestClient, user: int
) -> None:
    form = {"email": f"  {EMAIL.upper()} ", "password": PASSWORD, "next": "/contacts?q=a"}
    r = anonymous.post("/login", data=form)
    assert r.status_code == 303
    assert r.headers["location"] == "/contacts?q=a"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert PASSWORD not in cookie
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Path=/" in cookie
    # Signed in: the form sends you on; and never to another site.
    assert anonymous.get("/login?next=/contacts").headers["location"] == "/contacts"
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        assert anonymous.get("/login", params={"next": evil}).headers["location"] == "/"


def test_pages_redirect_to_login_without_a_valid_cookie(anonymous: TestClient) -> None:
    for cookie in (None, "rl_wrong", "a-made-up-session-id", ""):
        anonymous.cookies.clear()
        if cookie is not None:
            anonymous.cookies.set(SESSION_COOKIE, cookie)
        for path in (*PAGES, "/campaigns/1", "/contacts?q=x&page=2"):
            r = anonymous.get(path)
            assert r.status_code == 303, (cookie, path)
            assert r.headers["location"].startswith("/login?next=%2F")
        assert anonymous.get("/api/campaigns").status_code == 401
    r = anonymous.get("/login?next=/campaigns/new")
    assert r.status_code == 200
    assert 'name="email"' in r.text
    assert 'name="password"' in r.text


def test_pages_render_with_the_cookie_and_logout_clears_it(
    browser: TestClient, settings: Settings
) -> None:
    with session_scope(settings) as session:
        seed_contacts(session, 3, category="clients")
    for path in PAGES:
        r = browser.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "<script>" not in r.text  # no inline script: the CSP would block it
    assert 'name="category_ids" value="1"' in browser.get("/campaigns/new").text
    assert browser.get("/api/campaigns").status_code == 200  # the API accepts the cookie too
    assert browser.get("/campaigns/999").status_code == 404

    r = browser.post("/logout")
    assert r.status_code == 303
    assert r.headers["location"] == "/login"
    assert SESSION_COOKIE not in browser.cookies
    assert browser.get("/").status_code == 303


def test_user_text_is_escaped(browser: TestClient, settings: Settings) -> None:
    evil = "<script>alert(1)</script>"
    with session_scope(settings) as session:
        category_id = seed_contacts(session, 1, category=f"cat{evil}")
        session.query(Contact).update({"first_name": evil, "attributes": {"x": evil}})
        cid = make_campaign(session, [category_id])
    template = {
        "name": "t",
        "header": {"format": "text", "text": evil, "parameter_name": "h"},
        "named_parameters": {"x": evil},
        "buttons": [{"index": 0, "sub_type": "quick_reply", "payload": evil}],
    }
    edit = {"name": evil, "message_2": f"M2 {evil}", "message_2_template": template}
    r = browser.patch(f"/api/campaigns/{cid}", json=edit)
    assert r.status_code == 200
    for path in ("/", f"/campaigns/{cid}", "/contacts", "/campaigns/new"):
        text = browser.get(path).text
        assert evil not in text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text, path
    page = browser.get(f"/campaigns/{cid}").text
    assert "Past 24 h" in page  # Message 2's template is shown, its values escaped
    assert "button 1: &lt;script&gt;" in page


def test_contacts_page_searches_filters_and_pages(browser: TestClient, settings: Settings) -> None:
    with session_scope(settings) as session:
        clients = seed_contacts(session, 60, category="clients")
        seed_contacts(session, 5, category="vip", start=100)

    def phones(path: str) -> int:
        r = browser.get(path)
        assert r.status_code == 200
        return str(r.text).count('<td class="nowrap">+336')

    assert phones("/contacts") == 50
    assert "Page 1 of 2" in browser.get("/contacts").text
    assert phones("/contacts?page=2") == 15
    assert phones(f"/contacts?category={clients}") == 50
    assert phones(f"/contacts?category={clients}&page=2") == 10
    assert phones("/contacts?category=&q=Ada59") == 1  # "All" sends an empty category
    assert phones("/contacts?q=%2B33600000007") == 1
    assert phones("/contacts?category=abc") == 50  # not an id: no filter, no error


def test_preview_personalises_for_the_first_contact_of_the_categories(
    browser: TestClient, settings: Settings
) -> None:
    with session_scope(settings) as session:
        category_id = seed_contacts(session, 2, category="clients")
        session.query(Contact).filter(Contact.first_name == "Ada0").update(
            {"attributes": {"city": "Lyon"}}
        )
    body = {
        "message_1": "Bonjour {first_name} {last_name} de {city}",
        "message_2": "Code {code}",
        "template_parameters": ["{first_name}"],
        "category_ids": [category_id],
        "placeholder_defaults": {"code": "X1"},
    }
    r = browser.post("/api/preview", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["contact"]["first_name"] == "Ada0"
    assert out["message_1"] == "Bonjour Ada0 L de Lyon"
    assert out["message_2"] == "Code X1"
    assert out["template_parameters"] == ["Ada0"]
    assert out["missing"] == []
    r = browser.post("/api/preview", json={"message_1": "Hi {0} {city}", "category_ids": []})
    assert r.json()["contact"] is None
    assert r.json()["errors"] == {"message_1": "placeholder {0} is not a plain name"}
    r = browser.post("/api/preview", json={"message_1": "{city}", "category_ids": [category_id]})
    assert r.json()["missing"] == []  # Ada0 has a city
    assert browser.post("/api/preview", json={"category_ids": [0]}).status_code == 422


def test_preview_cuts_what_is_too_long_and_says_so(browser: TestClient, settings: Settings) -> None:
    """A 10,000-character attribute in a hundred placeholders would render 1,000,000
    characters: the preview returns WhatsApp's limit at most, and says the text is too long."""
    with session_scope(settings) as session:
        category_id = seed_contacts(session, 1)
        session.query(Contact).update({"attributes": {"bio": "b" * 10_000}})
    body = {
        "message_1": "{bio}" * 100,
        "message_2": "Merci {first_name}",
        "template_parameters": ["{bio}", "{first_name}"],
        "category_ids": [category_id],
    }
    r = browser.post("/api/preview", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["message_1"] == "b" * 4096
    assert out["message_2"] == "Merci Ada0"
    assert out["template_parameters"] == ["b" * 1024, "Ada0"]
    assert out["errors"] == {
        "message_1": "too long once personalised for this contact: 1,000,000 characters; "
        "WhatsApp allows 4,096",
        "template_parameters.0": "too long once personalised for this contact: 10,000 "
        "characters; a WhatsApp template parameter allows 1,024",
    }
    too_big = [
        {"placeholder_defaults": {"bio": "d" * 1001}},
        {"template_parameters": ["x"] * 21},
        {"template_parameters": ["x" * 1025]},
    ]
    for bad in too_big:
        assert browser.post("/api/preview", json=bad).status_code == 422, bad


def test_campaign_page_follows_the_stream_to_completed(
    browser: TestClient, settings: Settings
) -> None:
    """The SSE stream the page listens to, authenticated by the cookie, ends at completed."""
    with session_scope(settings) as session:
        category_id = seed_contacts(session, 6)
        cid = make_campaign(session, [category_id], message_2=None)
    page = browser.get(f"/campaigns/{cid}").text
    assert 'data-status="draft"' in page
    assert browser.post(f"/api/campaigns/{cid}/launch").json()["status"] == "sending"
    assert browser.get(f"/api/campaigns/{cid}/timeline").json()["buckets"] == []
    run_dispatch(settings, FakeProvider())

    events: list[tuple[str, str]] = []
    with browser.stream("GET", f"/api/campaigns/{cid}/events") as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, line.removeprefix("data: ")))
                if name == "end":
                    break
    assert [n for n, _ in events][-1] == "end"
    last = json.loads([d for n, d in events if n == "stats"][-1])
    assert (last["status"], last["completed"], last["finished"], last["total"]) == (
        "completed",
        True,
        6,
        6,
    )
    assert last["completed_at"] is not None

    page = browser.get(f"/campaigns/{cid}").text
    assert 'data-status="completed"' in page
    assert 'aria-valuenow="100"' in page
    buckets = browser.get(f"/api/campaigns/{cid}/timeline").json()["buckets"]
    assert sum(b["message_1"] for b in buckets) == 6
    assert all(b["message_2"] == 0 for b in buckets)
    assert 'data-status="completed"' in browser.get("/").text


def test_campaign_page_of_a_finished_campaign_survives_deleting_a_contact(
    browser: TestClient, settings: Settings
) -> None:
    """The page, its timeline and its open list still count the deleted contact's send."""
    with session_scope(settings) as session:
        category_id = seed_contacts(session, 6)
        cid = make_campaign(session, [category_id], message_2=None)
    assert browser.post(f"/api/campaigns/{cid}/launch").json()["status"] == "sending"
    run_dispatch(settings, FakeProvider())
    with session_scope(settings) as session:
        contact_id = session.scalars(select(Contact.id).order_by(Contact.id)).first()
    assert browser.delete(f"/api/contacts/{contact_id}").status_code == 204

    page = browser.get(f"/campaigns/{cid}")
    assert page.status_code == 200
    assert 'data-status="completed"' in page.text
    assert 'aria-valuenow="100"' in page.text
    buckets = browser.get(f"/api/campaigns/{cid}/timeline").json()["buckets"]
    assert sum(b["message_1"] for b in buckets) == 6
    blocking = browser.get(f"/api/campaigns/{cid}/blocking").json()
    assert (blocking["open_recipients"], blocking["items"]) == (0, [])
    recipients = browser.get(f"/api/campaigns/{cid}/recipients").json()
    assert (len(recipients["items"]), recipients["next"]) == (6, None)
    assert [r["phone"] for r in recipients["items"]].count(None) == 1


def test_campaign_page_counts_meta_limits_apart_and_offers_to_retry_them(
    browser: TestClient, settings: Settings
) -> None:
    """The counters and the funnel show the limited beside the failed; the page has the
    retry-limited action and a failures list (filled by campaign.js from the recipients API)."""
    with session_scope(settings) as session:
        category_id = seed_contacts(session, 4)
        cid = make_campaign(session, [category_id], message_2=None)
    assert browser.post(f"/api/campaigns/{cid}/launch").json()["status"] == "sending"
    errors = {
        phone(0): PermanentError("131049", "limited"),
        phone(1): PermanentError("131026", "x"),
    }
    run_dispatch(settings, FakeProvider(fail=lambda m: errors.get(m.to)))

    page = browser.get(f"/campaigns/{cid}").text

    assert '<dd data-stat="limited">1</dd>' in page
    assert '<dd data-stat="failed">2</dd>' in page
    losses = page.split('id="funnel-losses"', 1)[1].split("</ol>", 1)[0]
    assert 'data-funnel="failed"' in losses and 'data-funnel="limited"' in losses
    assert 'data-action="retry-limited"' in page
    assert 'id="failures-table"' in page and 'id="failures" hidden' not in page
    shown = browser.get(f"/api/campaigns/{cid}/recipients", params={"state": "failed"}).json()
    assert sorted(r["last_error_code"] for r in shown["items"]) == ["131026", "131049"]
    assert browser.post(f"/api/campaigns/{cid}/retry-limited").json()["retried"] == 1
    assert '<dd data-stat="limited">0</dd>' in browser.get(f"/campaigns/{cid}").text


def test_dashboard_helpers_need_the_key(anonymous: TestClient, settings: Settings) -> None:
    with session_scope(settings) as session:
        cid = make_campaign(session, [])
    assert anonymous.get(f"/api/campaigns/{cid}/timeline").status_code == 401
    assert anonymous.post("/api/preview", json={}).status_code == 401
    assert anonymous.get(f"/api/campaigns/{cid}/events").status_code == 401


def test_static_files_are_served_and_nothing_else(anonymous: TestClient) -> None:
    for name, kind in (("app.css", "text/css"), ("campaign.js", "text/javascript")):
        r = anonymous.get(f"/static/{name}")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith(kind)
    for bad in ("pages.py", "..%2Fpages.py", "missing.css", ".hidden.css", "APP.CSS"):
        assert anonymous.get(f"/static/{bad}").status_code == 404, bad


def test_contacts_page_says_when_and_from_what_each_contact_opted_out_or_in(
    browser: TestClient, settings: Settings
) -> None:
    with session_scope(settings) as session:
        seed_contacts(session, 3)
        opt_out(session, phone(0), source=OptSource.BUTTON)
        opt_out(session, phone(1), source=OptSource.PREFERENCE)
        opt_in(session, phone(1), source=OptSource.PREFERENCE)
        stopped = session.scalars(select(Contact).where(Contact.phone == phone(0))).one()
        stopped_at = stopped.opt_changed_at

    rows = contact_rows(browser)

    assert "opted out</span> by Stop promotions button" in rows[0]
    assert stopped_at is not None and stopped_at.strftime("%Y-%m-%d %H:%M UTC") in rows[0]
    assert "opted back in by WhatsApp setting" in rows[1]
    assert "opted" not in rows[2]
    r = browser.patch("/api/contacts/1", json={"opted_out": False})
    assert r.status_code == 200
    assert "opted back in by API" in contact_rows(browser)[0]


def contact_rows(browser: TestClient) -> list[str]:
    """The HTML of each row of the contacts table, in order."""
    page: str = browser.get("/contacts").text
    table = page.split('id="contacts-table"')[1]
    return table.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]
