"""Each role in a real browser: it signs in and finds exactly its actions, no more, no less.

The same table decides for the API (tests/integration/test_permissions.py); here, what the
dashboard shows. One stack, one browser context per role.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relance.runner import Stack
from tests.e2e.test_dashboard import _launch_browser, _require_chromium, _running
from tests.support.stack import cli_api_key, cli_user

PASSWORD = "correct horse battery"
# What each role must find; everything else in the lists below must be absent.
SEES = {
    "viewer": {
        "nav": {"Campaigns", "Contacts", "Senders", "API keys"},
        "actions": set(),
        "import": False,
    },
    "operator": {
        "nav": {"Campaigns", "New campaign", "Contacts", "Senders", "API keys"},
        "actions": {"launch", "delete"},
        "import": True,
    },
    "admin": {
        "nav": {"Campaigns", "New campaign", "Contacts", "Senders", "API keys", "Users", "Audit"},
        "actions": {"launch", "delete"},
        "import": True,
    },
}
PAGES = {"/campaigns/new": "operator", "/users": "admin", "/audit": "admin"}
RANK = ["viewer", "operator", "admin"]
ALL_ACTIONS = ("launch", "pause", "resume", "retry-failed", "retry-limited", "cancel", "delete")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    _require_chromium()
    with _running(tmp_path) as running:
        yield running


def test_each_role_finds_exactly_its_actions(stack: Stack) -> None:
    from playwright.sync_api import expect, sync_playwright

    for role in SEES:
        cli_user(stack.env, f"{role}@example.com", role, PASSWORD)
    key = cli_api_key(stack.env)
    base = stack.base_url
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as api:
        csv = "phone,first_name,categories\n+33612000001,Ada,roles\n"
        api.post("/api/contacts/import", files={"file": ("c.csv", csv, "text/csv")})
        category = api.get("/api/categories").json()["items"][0]["id"]
        body = {"name": "Draft", "message_1": "Hi", "message_2": "Thanks"}
        draft = api.post("/api/campaigns", json={**body, "category_ids": [category]}).json()

    with sync_playwright() as p:
        browser = _launch_browser(p)
        try:
            for role, sees in SEES.items():
                context = browser.new_context()
                context.set_default_timeout(15_000)
                page = context.new_page()
                page.goto(f"{base}/login")
                page.fill("#email", f"{role}@example.com")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                expect(page).to_have_url(f"{base}/")
                expect(page.locator("#signed-in-as")).to_contain_text(role)

                nav = {t.strip() for t in page.locator("nav.nav a").all_inner_texts()}
                assert nav == sees["nav"], (role, nav)
                new_button = page.locator("a.button", has_text="New campaign")
                expect(new_button).to_have_count(1 if "New campaign" in sees["nav"] else 0)

                page.goto(f"{base}/campaigns/{draft['id']}")
                buttons = page.locator("#actions [data-action]")
                present = {
                    buttons.nth(i).get_attribute("data-action") for i in range(buttons.count())
                }
                visible = {
                    a for a in present if page.locator(f'#actions [data-action="{a}"]').is_visible()
                }
                assert visible == sees["actions"], (role, visible)

                page.goto(f"{base}/contacts")
                expect(page.locator("#contacts-table")).to_be_visible()
                expect(page.locator("#import-form")).to_have_count(1 if sees["import"] else 0)

                for path, needs in PAGES.items():
                    response = page.goto(f"{base}{path}")
                    assert response is not None
                    allowed = RANK.index(role) >= RANK.index(needs)
                    assert response.status == (200 if allowed else 403), (role, path)

                # Everyone reads the Senders page; only an admin adds, pauses and resumes.
                page.goto(f"{base}/senders")
                default_row = page.locator("#senders-table tbody tr", has_text="default")
                expect(default_row).to_contain_text("0 / no limit")
                expect(default_row.locator(".pace")).not_to_be_empty()
                admin = role == "admin"
                expect(page.locator("#sender-form")).to_have_count(1 if admin else 0)
                expect(page.locator(".sender-status")).to_have_count(1 if admin else 0)
                if admin:
                    page.fill("#sender-name", "brand B")
                    page.fill("#sender-display", "+33 6 00 00 00 01")
                    page.fill("#sender-limit", "250")
                    page.click("#sender-create")
                    row = page.locator("#senders-table tbody tr", has_text="brand B")
                    expect(row).to_contain_text("0 / 250")
                    expect(row).to_contain_text("+33 6 00 00 00 01")
                    row.locator(".sender-status").click()
                    row = page.locator("#senders-table tbody tr", has_text="brand B")
                    expect(row.locator(".sender-state")).to_contain_text("paused by a person")
                    row.locator(".sender-status", has_text="Resume").click()
                    row = page.locator("#senders-table tbody tr", has_text="brand B")
                    expect(row.locator(".sender-state")).to_contain_text("active")

                # Everyone has a keys page for their own keys, with a role no higher than theirs.
                page.goto(f"{base}/keys")
                offered = page.locator("#key-role option").all_inner_texts()
                assert offered[1:] == RANK[: RANK.index(role) + 1][::-1], (role, offered)
                page.fill("#key-name", f"{role} key")
                page.click("#key-create")
                expect(page.locator("#key-secret")).to_contain_text("rl_")
                expect(page.locator("#keys-table")).to_contain_text(f"{role} key")
                context.close()
        finally:
            browser.close()
