"""The business account's message templates, as this API process knows them (Meta only).

``GET {META_GRAPH_URL}/{META_API_VERSION}/{META_WABA_ID}/message_templates``, page after page
as Meta pages it (``paging.cursors.after`` asked again while ``paging.next`` says there is
more; the ``next`` URL itself is not followed, so our token only ever goes to
``META_GRAPH_URL``), each template parsed by ``meta_templates.parse_template``. The list is kept
``CACHE_SECONDS`` by this process: the dashboard's form asks at each visit and its preview at
each keystroke, and a business account changes its templates rarely.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from relance.config import Settings
from relance.providers.http import join_url, json_object
from relance.providers.meta_templates import as_object, parse_template

CACHE_SECONDS = 300.0
# A failure is remembered this long: the preview asks at each keystroke, and must not wait for
# a Meta that is down (or a token that is wrong) every time.
FAILURE_SECONDS = 30.0
PAGE_SIZE = 100
MAX_PAGES = 100  # 10,000 templates: far above what Meta lets one account hold
FIELDS = "id,name,language,status,category,parameter_format,components"
TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class TemplatesUnavailable(Exception):
    """The list cannot be had: relance is not set up for it (503) or Meta failed (502)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class Listing:
    provider: str
    items: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    fetched_at: datetime | None = None


def not_offered(provider: str) -> str:
    return (
        f"RELANCE_PROVIDER={provider} sends Message 1 and Message 2 as plain text: "
        "WhatsApp templates are a Cloud API (meta) feature"
    )


def _graph_failure(response: httpx.Response) -> TemplatesUnavailable:
    error = json_object(response).get("error")
    message = error.get("message") if isinstance(error, dict) else None
    said = message or response.text[:200] or "no detail"
    return TemplatesUnavailable(
        502, f"Meta answered HTTP {response.status_code} to the template list: {said}"
    )


def fetch_templates(settings: Settings, client: httpx.Client) -> list[dict[str, Any]]:
    """Every template of the business account, parsed; TemplatesUnavailable when Meta fails."""
    s = settings
    url = join_url(s.meta_graph_url, s.meta_api_version, s.meta_waba_id, "message_templates")
    headers = {"Authorization": f"Bearer {s.meta_access_token}"}
    params = {"fields": FIELDS, "limit": str(PAGE_SIZE)}
    items: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        try:
            response = client.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            detail = f"could not reach Meta for the template list: {type(exc).__name__}"
            raise TemplatesUnavailable(502, detail) from exc
        if not response.is_success:
            raise _graph_failure(response)
        page = json_object(response)
        data = page.get("data")
        if not isinstance(data, list):
            raise TemplatesUnavailable(
                502, f"no 'data' list in Meta's answer: {response.text[:200]}"
            )
        items.extend(parse_template(t) for t in data if isinstance(t, dict))
        paging = as_object(page.get("paging"))
        after = as_object(paging.get("cursors")).get("after")
        if not paging.get("next") or not isinstance(after, str) or not after:
            break
        params = {**params, "after": after}
    return items


class TemplateCatalog:
    """The templates of META_WABA_ID, fetched at most once every ``ttl`` seconds."""

    def __init__(
        self,
        settings: Settings,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()  # one fetch at a time; the others wait for its answer
        self._cached: tuple[float, Listing] | None = None
        self._failed: tuple[float, TemplatesUnavailable] | None = None

    def listing(self) -> Listing:
        s = self._settings
        if s.provider != "meta":
            return Listing(s.provider, reason=not_offered(s.provider))
        if not s.meta_waba_id:
            raise TemplatesUnavailable(
                503,
                "META_WABA_ID is not set: give your WhatsApp Business Account ID to list its "
                "templates (WhatsApp Manager > Account tools, or the app's API Setup page)",
            )
        with self._lock:
            if self._cached is not None and self._clock() - self._cached[0] < self._ttl:
                return self._cached[1]
            if self._failed is not None and self._clock() - self._failed[0] < FAILURE_SECONDS:
                raise self._failed[1]
            try:
                with httpx.Client(timeout=TIMEOUT) as client:
                    items = fetch_templates(s, client)
            except TemplatesUnavailable as exc:
                self._failed = (self._clock(), exc)
                raise
            listing = Listing("meta", items, fetched_at=datetime.now(UTC))
            self._cached, self._failed = (self._clock(), listing), None
            return listing

    def find(self, name: str, language: str) -> dict[str, Any] | None:
        """The template of that name and language, or None (not in the list, or no list)."""
        return next(
            (t for t in self.listing().items if t["name"] == name and t["language"] == language),
            None,
        )
