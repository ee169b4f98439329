"""The campaign's results in a real browser: the recipients of a completed campaign filtered to
"failed" with Meta's reason, the CSV export opened, the rates; on a phone-sized screen too.

Same stack as ``test_dashboard.py`` (embedded defaults, the simulator answering over HTTP).
The README's picture of the recipients table is ``docs/recipients-table.png``.
"""

from __future__ import annotations

import csv
import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from relance.runner import Stack
from tests.e2e.test_dashboard import (
    ADMIN,
    PASSWORD,
    SHOTS,
    UPDATE_DOCS,
    _launch_browser,
    _require_chromium,
    _running,
)
from tests.support.api import wait_completed
from tests.support.browser import signed_in_page
from tests.support.stack import cli_api_key, cli_user

DOC_SHOT = Path(__file__).resolve().parents[2] / "docs" / "recipients-table.png"
CONTACTS = 12


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    _require_chromium()
    # A higher failure rate than the default: some numbers of 12 fail for sure.
    with _running(tmp_path, {"SIMULATOR_FAILURE_RATE": "0.3"}) as running:
        yield running


def _completed_campaign(base: str, key: str) -> int:
    csv_text = "phone,first_name,categories\n" + "".join(
        f"+3361300{i:04d},Ana{i},results\n" for i in range(CONTACTS)
    )
    csv_text += "+33613009999,=HYPERLINK(1),results\n"  # a name a spreadsheet would run
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        r = client.post("/api/contacts/import", files={"file": ("c.csv", csv_text, "text/csv")})
        assert r.status_code == 200, r.text
        category = client.get("/api/categories").json()["items"][0]["id"]
        r = client.post(
            "/api/campaigns",
            json={
                "name": "Results",
                "message_1": "Bonjour {first_name}",
                "message_2": "Merci !",
                "category_ids": [category],
                "reply_window_seconds": 5,
            },
        )
        assert r.status_code == 201, r.text
        campaign_id = int(r.json()["id"])
        assert client.post(f"/api/campaigns/{campaign_id}/launch").status_code == 200
        stats = wait_completed(client, campaign_id, 120, interval=0.25)
        assert stats["failed"] > 0, "the simulator fails some of these numbers"
        return campaign_id


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_failed_recipients_and_their_export(stack: Stack, tmp_path: Path, viewport: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    key = cli_api_key(stack.env)
    cli_user(stack.env, ADMIN, "admin", PASSWORD)
    base = stack.base_url
    campaign_id = _completed_campaign(base, key)
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    with sync_playwright() as p:
        browser = _launch_browser(p)
        try:
            page = signed_in_page(
                browser, base, ADMIN, PASSWORD, problems, viewport, downloads=True
            )
            page.goto(f"{base}/campaigns/{campaign_id}")
            expect(page.locator("#status")).to_have_text("completed")

            # The whole list, after completion; then only the failed, each with its reason.
            rows = page.locator("#recipients-table tbody tr")
            expect(rows).to_have_count(CONTACTS + 1)
            failed = int(page.locator('#counters [data-stat="failed"]').inner_text())
            page.get_by_role("checkbox", name="failed", exact=True).check()
            expect(rows).to_have_count(failed)
            expect(page.locator('#recipients-table tbody tr[data-state="failed"]')).to_have_count(
                failed
            )
            expect(rows.first.locator("td").nth(4)).to_have_text("131026")
            expect(rows.first.locator("td").nth(5)).to_contain_text("Message Undeliverable")
            expect(page.locator("[data-rate=delivery]")).to_contain_text("%")
            # A text search narrows it further, and a bad one says so.
            page.fill("#recipient-search", "nobody-has-this")
            page.click("#recipient-filters button[type=submit]")
            expect(page.locator("#recipients-empty")).to_be_visible()
            page.fill("#recipient-search", "")
            page.click("#recipient-filters button[type=submit]")
            expect(rows).to_have_count(failed)
            if viewport == "phone":
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"the campaign page is {overflow}px wider than the screen"
            shot = SHOTS / f"20-recipients-failed-{viewport}.png"
            page.screenshot(path=str(shot), full_page=True, animations="disabled")
            if viewport == "desktop" and (UPDATE_DOCS or not DOC_SHOT.exists()):
                DOC_SHOT.parent.mkdir(parents=True, exist_ok=True)
                page.locator("#recipients").screenshot(path=str(DOC_SHOT), animations="disabled")

            # The export follows the filters: the failed only, as a spreadsheet reads them.
            with page.expect_download() as download_info:
                page.click("#export")
            path = tmp_path / "export.csv"
            download_info.value.save_as(path)
            raw = path.read_bytes()
            assert raw.startswith(b"\xef\xbb\xbf")
            exported = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
            assert len(exported) == failed
            assert {row["state"] for row in exported} == {"failed"}
            assert all(row["error_code"] == "131026" for row in exported)
            # Everyone, unfiltered: the formula-like name is quoted.
            page.get_by_role("checkbox", name="failed", exact=True).uncheck()
            expect(rows).to_have_count(CONTACTS + 1)
            with page.expect_download() as download_info:
                page.click("#export")
            download_info.value.save_as(path)
            everyone = list(csv.DictReader(io.StringIO(path.read_text("utf-8-sig"), newline="")))
            assert len(everyone) == CONTACTS + 1
            assert "'=HYPERLINK(1)" in {row["first_name"] for row in everyone}
        except Exception:
            for i, open_page in enumerate(x for c in browser.contexts for x in c.pages):
                open_page.screenshot(path=str(SHOTS / f"failure-results-{i}.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert problems == []
    if viewport == "desktop" and DOC_SHOT.exists():
        shutil.copyfile(DOC_SHOT, SHOTS / "21-recipients-table.png")
