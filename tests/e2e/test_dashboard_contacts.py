"""Contacts and categories managed in a real browser (issue 15, item 4): edit a contact, opt
it out and back in and read why, filter by state, delete it; create, rename and delete
categories, a refusal naming the campaign that uses one; on a phone-sized screen too."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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

CSV = "phone,first_name,categories\n+33615000001,Camille,duo\n+33615000002,Léa,duo\n"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    _require_chromium()
    with _running(tmp_path) as running:
        yield running


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_contacts_and_categories_managed(stack: Stack, viewport: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    key = cli_api_key(stack.env)
    cli_user(stack.env, ADMIN, "admin", PASSWORD)
    base = stack.base_url
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        r = client.post("/api/contacts/import", files={"file": ("c.csv", CSV, "text/csv")})
        assert r.status_code == 200 and r.json()["created"] == 2, r.text
        duo = client.get("/api/categories").json()["items"][0]["id"]
        r = client.post(
            "/api/campaigns",
            json={"name": "Brouillon duo", "message_1": "Bonjour", "category_ids": [duo]},
        )
        assert r.status_code == 201, r.text
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    with sync_playwright() as p:
        browser = _launch_browser(p)
        try:
            page = signed_in_page(browser, base, ADMIN, PASSWORD, problems, viewport)

            # Categories: create, rename, a refused delete that names the campaign, a delete.
            page.goto(f"{base}/contacts")
            page.fill("#new-category", "nouveaux")
            page.click("#category-form button")
            rows = page.locator("#categories-table tbody tr")
            expect(rows).to_have_count(2)
            created = rows.filter(has=page.locator('input[value="nouveaux"]'))
            created.locator(".category-name").fill("news")
            created.locator('[data-category-action="rename"]').click()
            expect(page.locator('#categories-table input[value="news"]')).to_have_count(1)
            duo_row = page.locator(f'#categories-table tr[data-category-id="{duo}"]')
            duo_row.locator('[data-category-action="delete"]').click()
            expect(page.locator("#categories-error")).to_contain_text("Brouillon duo")
            news = rows.filter(has=page.locator('input[value="news"]'))
            news.locator('[data-category-action="delete"]').click()
            expect(rows).to_have_count(1)

            # A contact: edit, opt out (the list filters it), opt back in, with the history.
            page.click("#contacts-table >> text=Léa")
            page.fill("#first_name", "Léa-Rose")
            page.fill("#attributes", "city=Lyon")
            page.click("#contact-form button[type=submit]")
            expect(page.locator("#contact-saved")).to_be_visible()
            expect(page.locator("h1")).to_contain_text("Léa-Rose")
            expect(page.locator("#attributes")).to_have_value("city=Lyon")
            page.click("#opt-out")
            expect(page.locator("#opted-out-tag")).to_be_visible()
            expect(page.locator("#opt-history li")).to_have_count(1)
            expect(page.locator("#opt-history li").first).to_contain_text("the dashboard")
            contact_url = page.url
            page.goto(f"{base}/contacts?state=opted_out")
            expect(page.locator("#contacts-table tbody tr")).to_have_count(1)
            expect(page.locator("#contacts-table tbody tr")).to_contain_text("Léa-Rose")
            page.goto(contact_url)
            page.click("#opt-in")
            expect(page.locator("#opted-out-tag")).to_have_count(0)
            expect(page.locator("#opt-history li")).to_have_count(2)
            expect(page.locator("#opt-history li").first).to_contain_text("Opted back in")
            if viewport == "phone":
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"the contact page is {overflow}px wider than the screen"
            page.screenshot(path=str(SHOTS / f"40-contact-{viewport}.png"), full_page=True)
            # Delete: the contact is gone from the list.
            page.click("#delete-contact")
            expect(page).to_have_url(f"{base}/contacts")
            expect(page.locator("#contacts-table tbody tr")).to_have_count(1)
            expect(page.locator("#contacts-table")).not_to_contain_text("Léa")
        except Exception:
            for i, open_page in enumerate(x for c in browser.contexts for x in c.pages):
                open_page.screenshot(path=str(SHOTS / f"failure-contacts-{i}.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert problems == []
