"""The dashboard in a real browser against the real stack (SPEC 3 "Dashboard", 9).

uvicorn, a Celery worker and Celery Beat run as subprocesses on the embedded defaults (SQLite
and the filesystem broker) with the simulator, which answers over HTTP with signed webhooks.
Playwright drives Debian's chromium: sign in, import a CSV, create and launch a campaign,
pause, resume, and watch the page reach 100 % and ``completed`` by Server-Sent Events alone.
Every wait has a deadline; nothing sleeps a fixed time. Screenshots go to
``artifacts/screenshots/``; the final campaign page also to ``docs/campaign-page.png`` (the
README's picture) when that file is missing or ``UPDATE_DOCS_SCREENSHOT=1``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from relance.config import load_settings
from relance.fakes.graph import FakeGraph
from relance.processes import free_port, wait_until
from relance.runner import Stack, running_stack
from tests.conftest import IN_CI
from tests.support.stack import UNPACED, cli_api_key, cli_user

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
DOC_SHOT = ROOT / "docs" / "campaign-page.png"
UPDATE_DOCS = bool(os.environ.get("UPDATE_DOCS_SCREENSHOT"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MIN_WINDOW_SECONDS = 10
# The reply window must outlast launch -> pause -> reading why the campaign waits: one page
# load and two actions, about half of what signing in takes (two page loads) on any machine.
WINDOW_PER_SIGN_IN = 5
CONTACTS = 20
FAST = {
    # Embedded defaults: empty means SQLite and the filesystem broker under RELANCE_DATA_DIR.
    "DATABASE_URL": "",
    "BROKER_URL": "",
    "REDIS_URL": "",
    "RELANCE_PROVIDER": "simulator",
    **UNPACED,
    "SIMULATOR_MIN_DELAY_SECONDS": "0.05",
    "SIMULATOR_MAX_DELAY_SECONDS": "0.5",
    "CHECK_EXPIRED_INTERVAL_SECONDS": "1",
    "DISPATCH_INTERVAL_SECONDS": "1",
}
BAD_PHONE = "<img src=x id=injected>"
META_SECRET = "e2e-meta-app-secret"
ADMIN = "admin@example.com"
PASSWORD = "correct horse battery"
META_FIXTURES = Path(__file__).parents[1] / "fixtures" / "meta"
TEMPLATES = [
    template
    for name in ("message_templates_components.json", "message_templates.json")
    for template in json.loads((META_FIXTURES / name).read_text())["data"]
]


def _contacts_csv(path: Path) -> Path:
    """20 good rows (a ``city`` attribute, one or two categories) and 2 bad ones."""
    names = ["Camille", "Léa", "Hugo", "Chloé", "Louis", "Inès", "Jules", "Manon", "Noah", "Zoé"]
    cities = ["Lyon", "Paris", "Nantes", "Lille"]
    lines = ["phone,first_name,last_name,categories,city"]
    for i in range(CONTACTS):
        categories = "clients e2e;vip" if i % 4 == 0 else "clients e2e"
        lines.append(f"+336120000{i:02d},{names[i % 10]},Martin{i},{categories},{cities[i % 4]}")
        if i == 6:
            lines.append("12345,Bad,Phone,clients e2e,Lyon")
        if i == 13:
            lines.append(f"{BAD_PHONE},Eve,,clients e2e,Paris")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing (apt-get install -y chromium)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@contextmanager
def _running(tmp_path: Path, extra: Mapping[str, str] = {}) -> Iterator[Stack]:
    """The stack on the embedded defaults (FAST), ``extra`` added to its environment."""
    port = free_port()
    data = tmp_path / "data"
    public_url = f"http://127.0.0.1:{port}"
    env = {**FAST, "RELANCE_DATA_DIR": str(data), "PUBLIC_URL": public_url, **extra}
    settings = load_settings(
        data_dir=data, database_url="", broker_url="", redis_url="", public_url=public_url
    )
    started = time.monotonic()
    try:
        with running_stack(settings, "127.0.0.1", port, env, log_dir=str(tmp_path)) as running:
            print(f"\nstack ready in {time.monotonic() - started:.1f} s on {running.base_url}")
            yield running
    finally:  # running_stack has stopped every child by now, even on failure
        for role in ("api", "worker", "beat"):
            log = tmp_path / f"{role}.log"
            if log.exists() and os.environ.get("E2E_SHOW_LOGS"):
                print(f"--- {role}.log ---\n{log.read_text(errors='replace')[-4000:]}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    _require_chromium()
    with _running(tmp_path) as running:
        yield running


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    """The fake Cloud API, with the business account's templates of Meta's documentation."""
    with FakeGraph(
        app_secret=META_SECRET, templates=TEMPLATES, page_size=2, keep_templates=True
    ) as fake:
        yield fake


@pytest.fixture
def meta_stack(tmp_path: Path, graph: FakeGraph) -> Iterator[Stack]:
    """The stack on the meta provider, the Graph API being the fake."""
    _require_chromium()
    meta = {
        "RELANCE_PROVIDER": "meta",
        "META_GRAPH_URL": graph.url,
        "META_PHONE_NUMBER_ID": "106540352242922",
        "META_ACCESS_TOKEN": "e2e-token",
        "META_APP_SECRET": META_SECRET,
        "META_VERIFY_TOKEN": "e2e-verify",
        "META_WABA_ID": graph.waba_id,
    }
    with _running(tmp_path, meta) as running:
        yield running


def _launch_browser(p: Any) -> Any:
    return p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def test_dashboard_in_a_real_browser(stack: Stack, tmp_path: Path) -> None:
    from playwright.sync_api import Page, expect, sync_playwright

    cli_user(stack.env, ADMIN, "admin", PASSWORD)
    base = stack.base_url
    csv_file = _contacts_csv(tmp_path / "contacts.csv")
    SHOTS.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    problems: list[str] = []

    def shot(page: Page, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    def watch(page: Page) -> None:
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on(
            "console",
            lambda m: (
                problems.append(f"console: {m.text}")
                if m.type == "error" and "Content Security Policy" in m.text
                else None
            ),
        )
        page.on("dialog", lambda dialog: dialog.accept())  # the confirm() of every action

    with sync_playwright() as p:
        browser = _launch_browser(p)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(15_000)
            page = context.new_page()
            watch(page)

            # Sign in: a wrong password is refused on the form, the right one opens the dashboard.
            t0 = time.monotonic()
            page.goto(f"{base}/")
            expect(page).to_have_url(f"{base}/login?next=%2F")
            page.fill("#email", ADMIN)
            page.fill("#password", "not the password")
            page.click("button[type=submit]")
            expect(page.locator("#login-error")).to_have_text(
                "This email and password do not match an account."
            )
            shot(page, "01-login-refused")
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/")
            expect(page.locator("h1")).to_contain_text("Campaigns")
            shot(page, "02-campaigns-empty")
            timings["sign in"] = time.monotonic() - t0

            # CSV import: counts, the rejected rows in a table (as text), the list refreshed.
            t0 = time.monotonic()
            page.click("nav >> text=Contacts")
            page.set_input_files("#import-file", str(csv_file))
            page.click("#import-button")
            expect(page.locator("#import-result")).to_be_visible()
            expect(page.locator("#import-created")).to_have_text(str(CONTACTS))
            expect(page.locator("#import-updated")).to_have_text("0")
            expect(page.locator("#import-rejected-count")).to_have_text("2")
            rejected = page.locator("#rejected-table tbody tr")
            expect(rejected).to_have_count(2)
            expect(rejected.nth(0).locator("td").nth(0)).to_have_text("9")  # header is line 1
            expect(rejected.nth(1).locator("td").nth(0)).to_have_text("17")
            expect(rejected.nth(1).locator("td").nth(1)).to_contain_text(BAD_PHONE)
            expect(page.locator("#rejected-more")).to_be_hidden()
            assert page.locator("#injected").count() == 0  # shown as text, never as HTML
            expect(page.locator("#contacts-total")).to_have_text(str(CONTACTS))
            expect(page.locator("#contacts-table tbody tr")).to_have_count(CONTACTS)
            expect(page.locator("#category option")).to_have_count(3)  # All, clients e2e, vip
            shot(page, "03-contacts-imported")
            page.select_option("#category", label="vip (5)")
            page.click("form[role=search] button")
            expect(page.locator("#contacts-table tbody tr")).to_have_count(5)
            # More bad rows than the answer lists: the rest are counted, not shown.
            many_bad = tmp_path / "many-bad.csv"
            many_bad.write_text("phone\n" + "nope\n" * 1002, encoding="utf-8")
            page.set_input_files("#import-file", str(many_bad))
            page.click("#import-button")
            expect(page.locator("#import-rejected-count")).to_have_text("1002")
            expect(rejected).to_have_count(1000)
            expect(page.locator("#rejected-more")).to_be_visible()
            expect(page.locator("#rejected-more-count")).to_have_text("2")
            timings["import"] = time.monotonic() - t0

            # New campaign: API errors land next to their field; live count and preview.
            t0 = time.monotonic()
            page.click("nav >> text=New campaign")
            # The simulator sends plain text: no template to pick, and the page says why.
            expect(page.locator("#templates-status")).to_contain_text("plain text")
            expect(page.locator("#message_1_template-box")).to_be_hidden()
            page.fill("#message_1", "Bonjour {first_name} de {city} !")
            page.click("#save-draft")
            expect(page.locator('[data-error-for="name"]')).to_be_visible()
            expect(page.locator("#name")).to_have_attribute("aria-invalid", "true")
            shot(page, "04-new-campaign-error")
            page.fill("#name", "Relance printemps")
            page.fill("#message_2", "Merci {first_name}, voici votre code : PRINTEMPS")
            page.get_by_role("checkbox", name="clients e2e").check()
            expect(page.locator("#audience-count")).to_have_text(str(CONTACTS))
            expect(page.locator("#preview-message-1")).to_have_text("Bonjour Camille de Lyon !")
            expect(page.locator("#preview-message-2")).to_contain_text("Merci Camille")
            window = max(MIN_WINDOW_SECONDS, math.ceil(WINDOW_PER_SIGN_IN * timings["sign in"]))
            page.fill("#window_value", str(window))
            page.select_option("#window_unit", label="seconds")
            shot(page, "05-new-campaign")
            page.click("#launch")
            launched = time.monotonic()
            page.wait_for_url(f"{base}/campaigns/*")
            timings["create and launch"] = time.monotonic() - t0

            # The campaign page: pause and resume, then completion arrives by SSE only.
            status = page.locator("#status")
            expect(status).to_have_text("sending")
            page.evaluate("window.__sameDocument = true")  # gone if the page ever reloads
            page.click("[data-action=pause]")
            expect(status).to_have_text("paused")
            expect(page.locator("[data-action=resume]")).to_be_visible()
            open_rows = page.locator("#blocking-table tbody tr")
            expect(open_rows.first).to_be_visible()  # window still open: the page says why
            expect(open_rows.first.locator("td").nth(2)).not_to_contain_text("+00:00")
            shot(page, "06-campaign-paused")
            timings["launch to paused"] = time.monotonic() - launched
            page.click("[data-action=resume]")
            expect(status).not_to_have_text("paused")
            t0 = time.monotonic()
            page.wait_for_function(
                """() => document.querySelector('#progress').getAttribute('aria-valuenow') === '100'
                     && document.querySelector('#status').textContent === 'completed'""",
                timeout=120_000,
            )
            timings["resume to completed"] = time.monotonic() - t0
            assert page.evaluate("window.__sameDocument") is True
            expect(page.locator("#progress-text")).to_contain_text(f"{CONTACTS} / {CONTACTS}")
            expect(page.locator("#completed-at time")).to_have_count(1)
            expect(page.locator("#blocking-empty")).to_be_visible()
            expect(page.locator("#live")).to_be_hidden()  # the stream said "end"
            funnel = page.locator("[data-funnel=total] .funnel-value")
            expect(funnel).to_have_text(str(CONTACTS))
            sent = int(page.locator("[data-funnel=message_1_sent] .funnel-value").inner_text())
            assert sent > 0
            expect(page.locator("#timeline .timeline-col").first).to_be_visible()
            counts = {
                key: int(page.locator(f'#counters [data-stat="{key}"]').inner_text())
                for key in ("message_2_sent", "no_interaction", "failed", "cancelled")
            }
            assert sum(counts.values()) == CONTACTS, counts  # R2.3 as the page shows it
            # Each failure with the provider's code and words (the simulator's are Meta's).
            failures = page.locator("#failures-table tbody tr")
            expect(failures).to_have_count(counts["failed"])
            assert counts["failed"] > 0, "the simulator fails one of these numbers"
            expect(failures.first.locator("td").nth(1)).to_have_text("131026")
            expect(failures.first.locator("td").nth(2)).to_contain_text("Message Undeliverable")
            expect(page.locator('#counters [data-stat="limited"]')).to_have_text("0")
            expect(page.locator("[data-action=retry-limited]")).to_be_hidden()
            expect(page.locator("[data-action=retry-failed]")).to_be_visible()
            final = shot(page, "07-campaign-completed")
            if UPDATE_DOCS or not DOC_SHOT.exists():  # a committed file: refresh on request
                DOC_SHOT.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(final, DOC_SHOT)

            page.click("nav >> text=Campaigns")
            row = page.locator(".campaign-item").first
            expect(row.locator(".badge")).to_have_text("completed")
            expect(row.locator(".progress")).to_have_attribute("aria-valuenow", "100")
            shot(page, "08-campaigns")
            campaign_url = f"{base}/campaigns/{row.get_attribute('data-campaign-id')}"

            # A refused launch: the reason sits by its field, the draft is kept and reused.
            t0 = time.monotonic()
            page.click("nav >> text=New campaign")
            page.fill("#name", "VIP sans ville")
            page.fill("#message_1", "Bonjour {first_name}, rendez-vous à {store} !")
            page.fill("#message_2", "À bientôt !")  # with a Message 2 it waits for replies
            page.get_by_role("checkbox", name="vip").check()
            expect(page.locator("#audience-count")).to_have_text("5")
            expect(page.locator("#preview-missing")).to_contain_text("{store}")
            page.click("#launch")
            store_error = page.locator('[data-error-for="placeholder_defaults"]')
            expect(store_error).to_contain_text("{store} missing for 5 recipient(s)")
            expect(page.locator("#form-error")).to_contain_text("Saved as a draft")
            shot(page, "09-launch-refused")
            page.fill("#placeholder_defaults", "store=Lyon Part-Dieu")
            expect(store_error).to_be_hidden()  # editing the field clears what was said
            expect(page.locator("#preview-message-1")).to_contain_text("Lyon Part-Dieu")
            page.click("#launch")
            page.wait_for_url(f"{base}/campaigns/*")
            expect(status).to_have_text("sending")
            page.click("[data-action=cancel]")
            expect(status).to_have_text("cancelled")
            expect(page.locator("[data-action=delete]")).to_be_visible()
            page.click("nav >> text=Campaigns")
            expect(page.locator(".campaign-item")).to_have_count(2)  # the draft was reused
            expect(page.locator(".campaign-item .badge").first).to_have_text("cancelled")
            timings["refused launch, fix, cancel"] = time.monotonic() - t0

            # A phone-width screen: same session, nothing wider than the screen.
            phone = browser.new_context(
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
                storage_state=context.storage_state(),
            )
            mobile = phone.new_page()
            watch(mobile)
            for url, name in ((campaign_url, "10-phone-campaign"), (f"{base}/", "11-phone-list")):
                mobile.goto(url)
                expect(mobile.locator('.badge[data-status="completed"]')).to_have_count(1)
                overflow = mobile.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 0, f"{url} is {overflow}px wider than a 390px screen"
                shot(mobile, name)
            phone.close()

            # Log out: the cookie is gone and the pages ask to sign in again.
            page.click("#logout")
            expect(page).to_have_url(f"{base}/login")
            page.goto(f"{base}/contacts")
            expect(page).to_have_url(f"{base}/login?next=%2Fcontacts")
        except Exception:
            for i, open_page in enumerate(x for c in browser.contexts for x in c.pages):
                open_page.screenshot(path=str(SHOTS / f"failure-{i}.png"), full_page=True)
            raise
        finally:
            browser.close()
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    assert problems == []


def test_template_form_in_a_real_browser(
    meta_stack: Stack, graph: FakeGraph, tmp_path: Path
) -> None:
    """On meta: pick an approved template in the form, fill its parameters with contact
    placeholders, see it previewed for the first contact, launch, and find it at Meta."""
    from playwright.sync_api import expect, sync_playwright

    key = cli_api_key(meta_stack.env)
    cli_user(meta_stack.env, ADMIN, "admin", PASSWORD)
    base = meta_stack.base_url
    csv = "phone,first_name,categories,city\n" + "".join(
        f"+3361200010{i},{name},templates e2e,{city}\n"
        for i, (name, city) in enumerate([("Camille", "Lyon"), ("Hugo", "Lille"), ("Zoé", "Nice")])
    )
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
        r = client.post("/api/contacts/import", files={"file": ("c.csv", csv, "text/csv")})
        assert r.status_code == 200 and r.json()["created"] == 3, r.text
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    with sync_playwright() as p:
        browser = _launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on("dialog", lambda dialog: dialog.accept())
            page.goto(f"{base}/login")
            page.fill("#email", ADMIN)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(f"{base}/")
            page.click("nav >> text=New campaign")

            # The business account's templates, as Meta lists them.
            select = page.locator("#message_1_template-select")
            expect(page.locator("#message_1_template-box")).to_be_visible()
            expect(select.locator("option")).to_have_count(len(TEMPLATES) + 1)
            expect(select.locator("option", has_text="summer_catalogue")).to_contain_text("PAUSED")
            unsendable = select.locator("option", has_text="order_delivery_update")
            expect(unsendable).to_be_disabled()
            expect(unsendable).to_contain_text("LOCATION header")

            page.fill("#name", "Template campaign")
            page.get_by_role("checkbox", name="templates e2e").check()
            expect(page.locator("#audience-count")).to_have_text("3")
            select.select_option(label="seasonal_promotion (en_US)")
            expect(page.locator("#message_1_template-box [data-template-info]")).to_contain_text(
                "MARKETING"
            )
            fields = page.locator("#message_1_template-box [data-template-field]")
            expect(fields).to_have_count(6)  # header {{1}}, body {{1}}-{{3}}, two quick replies
            page.fill('[id="message_1_template.header.text"]', "{first_name}")
            page.fill('[id="message_1_template.parameters.0"]', "dimanche")
            page.fill('[id="message_1_template.parameters.1"]', "{city}")
            page.fill('[id="message_1_template.parameters.2"]', "25%")
            page.fill('[id="message_1_template.buttons.0.payload"]', "STOP_{city}")
            # Message 1's own copy follows the template until the user writes one.
            expect(page.locator("#message_1")).to_have_value(
                "Shop now through dimanche and use code {city} to get 25% off of all merchandise."
            )

            preview = page.locator("#message_1_template-preview")
            expect(preview.locator('[data-preview="header"]')).to_have_text("Our Camille is on!")
            expect(preview.locator('[data-preview="body"]')).to_have_text(
                "Shop now through dimanche and use code Lyon to get 25% off of all merchandise."
            )
            expect(preview.locator('[data-preview="footer"]')).to_contain_text("marketing")
            buttons = preview.locator('[data-preview="buttons"] li')
            expect(buttons).to_have_count(2)
            expect(buttons.nth(0)).to_contain_text("Unsubscribe from Promos")
            expect(buttons.nth(0)).to_contain_text("STOP_Lyon")
            expect(preview.locator('[data-preview="note"]')).to_be_hidden()
            page.screenshot(path=str(SHOTS / "12-template-preview.png"), full_page=True)

            # A placeholder that does not parse: said in the preview, then by its field.
            page.fill('[id="message_1_template.parameters.1"]', "{city")
            expect(preview.locator('[data-preview="note"]')).to_contain_text("parameters.1")
            page.click("#save-draft")
            expect(
                page.locator('[data-error-for="message_1_template.parameters.1"]')
            ).to_be_visible()
            page.fill('[id="message_1_template.parameters.1"]', "{city}")
            expect(preview.locator('[data-preview="note"]')).to_be_hidden()

            page.click("#launch")
            page.wait_for_url(f"{base}/campaigns/*")
            expect(page.locator("#status")).not_to_have_text("draft")
        finally:
            browser.close()
    assert problems == []

    wait_until(lambda: len(graph.accepted) == 3, 60, "the three templates sent")
    sent = {a.to: a.template for a in graph.accepted}
    assert sent["33612000100"] == {
        "name": "seasonal_promotion",
        "language": {"code": "en_US"},
        "components": [
            {"type": "header", "parameters": [{"type": "text", "text": "Camille"}]},
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "dimanche"},
                    {"type": "text", "text": "Lyon"},
                    {"type": "text", "text": "25%"},
                ],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "STOP_Lyon"}],
            },
        ],
    }
    zoe = sent["33612000102"]
    assert zoe is not None
    assert zoe["components"][0]["parameters"][0]["text"] == "Zoé"
