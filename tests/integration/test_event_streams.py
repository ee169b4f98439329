"""The campaign event stream through the app, on SQLite and PostgreSQL: cap, retry, lifetime."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from relance.config import Settings, get_settings, load_settings
from relance.db import session_scope
from tests.support.api import api_client
from tests.support.engine import make_campaign, seed_contacts


@pytest.fixture
def one_stream(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("MAX_EVENT_STREAMS", "1")
    monkeypatch.setenv("EVENT_STREAM_MAX_SECONDS", "1")
    get_settings.cache_clear()
    yield load_settings()
    get_settings.cache_clear()


def test_streams_are_capped_and_end_with_a_reconnect_hint(one_stream: Settings) -> None:
    with session_scope(one_stream) as session:
        campaign_id = make_campaign(session, [seed_contacts(session, 2)])  # a draft: never final
    client: TestClient = api_client(one_stream)
    url = f"/api/campaigns/{campaign_id}/events"
    with client.stream("GET", url) as first:
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/event-stream")
        full = client.get(url)
        assert full.status_code == 503
        assert full.headers["retry-after"] == "5"
        assert "retry later" in full.json()["detail"]
        text = "".join(first.iter_text())  # ends by itself after EVENT_STREAM_MAX_SECONDS
    assert text.startswith("retry: 3000\n\n")
    assert text.count("event: stats") == 1
    assert "event: end" not in text
    # The slot is free again once the first stream ended.
    with client.stream("GET", url) as again:
        assert again.status_code == 200
    assert client.get("/api/campaigns/999999/events").status_code == 404
