"""A dashboard page in a real browser, signed in: what every browser test starts from."""

from __future__ import annotations

from typing import Any

VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


def signed_in_page(
    browser: Any,
    base: str,
    email: str,
    password: str,
    problems: list[str],
    viewport: str = "desktop",
    downloads: bool = False,
) -> Any:
    """A new page of ``browser`` at ``viewport`` (a phone is touch, at 2x), signed in as
    ``email``; page errors go to ``problems``, confirmation dialogs are accepted."""
    from playwright.sync_api import expect

    mobile: dict[str, Any] = (
        {"device_scale_factor": 2, "is_mobile": True, "has_touch": True}
        if viewport == "phone"
        else {}
    )
    context = browser.new_context(
        viewport=VIEWPORTS[viewport], accept_downloads=downloads, **mobile
    )
    context.set_default_timeout(15_000)
    # A navigation waits on the server (a launch, a save): on a loaded machine it takes longer
    # than a check on the page, and a wait that passes returns as soon as it holds.
    context.set_default_navigation_timeout(60_000)
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base}/")
    return page
