"""Everyday management in a real browser (issue 15, item 4): the audience check over every
contact with a fallback given in place, an empty audience blocking the launch, a refused
draft edited and launched, individual contacts, a campaign scheduled then edited; on a
phone-sized screen too. Same stack as ``test_dashboard.py``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from relance.runner import Stack
from tests.e2e.test_dashboard import (
    ADMIN,
    PASSWORD,
    SHOTS,
    _launch_browser,
    _require_chromium,
    _running,
)
from tests.support.browser import signed_in_page
from tests.support.stack import cli_api_key, cli_user

CAMPAIGN_PAGE = re.compile(r"/campaigns/\d+$")
CSV = (
    "phone,first_name,categories,city\n"
    "+33614000001,Camille,duo,Lyon\n"
    "+33614000002,Léa,duo,\n"
    "+33614000003,Solo,,Nice\n"
)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    _require_chromium()
    with _running(tmp_path) as running:
        yield running


def _no_overflow(page: Any) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{page.url} is {overflow}px wider than the screen"


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_edit_a_refused_draft_then_schedule_one(stack: Stack, viewport: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    key = cli_api_key(stack.env)
    cli_user(stack.env, ADMIN, "admin", PASSWORD)
    base = stack.base_url
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        r = client.post("/api/contacts/import", files={"file": ("c.csv", CSV, "text/csv")})
        assert r.status_code == 200 and r.json()["created"] == 3, r.text
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    with sync_playwright() as p:
        browser = _launch_browser(p)
        try:
            page = signed_in_page(browser, base, ADMIN, PASSWORD, problems, viewport)

            # No audience yet: the launch is blocked, and the page says why.
            page.goto(f"{base}/campaigns/new")
            expect(page.locator("#launch")).to_be_disabled()
            expect(page.locator("#launch-blocked")).to_contain_text("no reachable contact")
            page.fill("#name", "Villes")
            page.fill("#message_1", "Bonjour {first_name} de {city} !")
            page.get_by_role("checkbox", name="duo").check()
            expect(page.locator("#audience-count")).to_have_text("2")
            expect(page.locator("#launch")).to_be_enabled()
            # Camille (previewed) has a city, Léa has none: the check reads every contact.
            missing = page.locator('#audience-missing [data-placeholder="city"]')
            expect(missing).to_contain_text("1 contact(s)")
            expect(missing).to_contain_text("Léa")
            page.click("#save-draft")
            page.wait_for_url(CAMPAIGN_PAGE)
            campaign_url = page.url
            expect(page.locator("#status")).to_have_text("draft")
            expect(page.locator("#blocking-empty")).to_contain_text("Not launched yet")
            # Launch refused for the missing value; the draft is edited, not made again.
            page.click("[data-action=launch]")
            expect(page.locator("#action-error")).to_contain_text("{city} missing for 1")
            page.click("#edit")
            expect(page.locator("#name")).to_have_value("Villes")
            expect(page.get_by_role("checkbox", name="duo")).to_be_checked()
            fallback = page.locator('[data-fallback="city"]')
            fallback.fill("chez vous")
            fallback.press("Enter")
            expect(page.locator("#placeholder_defaults")).to_have_value("city=chez vous")
            expect(page.locator("#audience-missing")).to_be_hidden()
            # An individual contact, found by name, beside the category.
            page.fill("#contact-search", "Solo")
            page.click("#contact-results button")
            expect(page.locator("#chosen-contacts li")).to_have_count(1)
            expect(page.locator("#audience-count")).to_have_text("3")
            if viewport == "phone":
                _no_overflow(page)
            page.screenshot(path=str(SHOTS / f"30-edit-draft-{viewport}.png"), full_page=True)
            page.click("#launch")
            page.wait_for_url(campaign_url)
            expect(page.locator("#status")).not_to_have_text("draft")
            expect(page.locator("#edit")).to_be_hidden()
            expect(page.locator('[data-stat="total"]')).to_have_text("3")

            # A campaign scheduled for tomorrow, then edited: it stays scheduled.
            page.goto(f"{base}/campaigns/new")
            page.fill("#name", "Demain")
            page.fill("#message_1", "Bonjour {first_name}")
            page.get_by_role("checkbox", name="duo").check()
            tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
            page.fill("#scheduled_at", tomorrow)
            expect(page.locator("#launch")).to_have_text("Schedule")
            page.click("#launch")
            page.wait_for_url(CAMPAIGN_PAGE)
            expect(page.locator("#status")).to_have_text("scheduled")
            expect(page.locator("#scheduled-for time")).to_have_count(1)
            page.click("#edit")
            expect(page.locator("#scheduled_at")).to_have_value(tomorrow)
            page.fill("#name", "Demain matin")
            page.click("#launch")
            page.wait_for_url(CAMPAIGN_PAGE)
            expect(page.locator("#status")).to_have_text("scheduled")
            expect(page.locator("#campaign-name")).to_have_text("Demain matin")
            if viewport == "phone":
                _no_overflow(page)
            page.screenshot(path=str(SHOTS / f"31-scheduled-{viewport}.png"), full_page=True)
        except Exception:
            for i, open_page in enumerate(x for c in browser.contexts for x in c.pages):
                open_page.screenshot(path=str(SHOTS / f"failure-manage-{i}.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert problems == []
