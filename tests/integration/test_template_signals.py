"""Meta's template status updates pause and resume the campaigns using the template (issue 14,
item 5), posted as Meta sends them, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from relance.campaigns import lifecycle
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.db import session_scope
from relance.models import Campaign
from tests.integration.test_webhooks_api import events, launch, ok, post_meta, use_provider
from tests.support.engine import TEMPLATE

FIXTURES = Path(__file__).parents[1] / "fixtures" / "meta"
FIXTURE = FIXTURES / "webhook_message_template_status_update.json"
NAME = str(TEMPLATE["name"])


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return use_provider(monkeypatch, "meta")


def status_update(event: str, name: str = NAME, language: str = "fr") -> dict[str, Any]:
    """Meta's documented body, about our test template, with this event."""
    body: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    value = body["entry"][0]["changes"][0]["value"]
    value.update(event=event, message_template_name=name, message_template_language=language)
    body["entry"][0]["time"] = hash(event) % 10**9  # another update, not a duplicate
    if event != "PAUSED":
        value.pop("other_info", None)
    return body


def campaign(client: TestClient, cid: int) -> dict[str, Any]:
    return client.get(f"/api/campaigns/{cid}/stats").json()  # type: ignore[no-any-return]


def test_a_paused_template_pauses_its_campaigns_and_approval_resumes_them(
    client: TestClient, settings: Settings, followups: RecordingFollowups
) -> None:
    ours, category = launch(settings, 2)
    other_language, _ = launch(settings, 0, category_id=category)
    with session_scope(settings) as session:
        session.get_one(Campaign, other_language).message_1_template = {
            **TEMPLATE,
            "language": "en",
        }

    ok(post_meta(client, status_update("PAUSED")))
    stats = campaign(client, ours)
    assert stats["status"] == "paused"
    assert stats["status_reason"].startswith(
        f"Meta paused the Message 1 template {TEMPLATE['name']} (fr)"
    )
    blocking = client.get(f"/api/campaigns/{ours}/blocking").json()
    assert blocking["paused_by"] == stats["status_reason"]
    assert campaign(client, other_language)["status"] == "sending"  # another template
    assert "paused campaigns" in (events(settings)[-1].outcome or "")

    dispatches = followups.dispatches
    ok(post_meta(client, status_update("APPROVED")))
    stats = campaign(client, ours)
    assert (stats["status"], stats["status_reason"]) == ("sending", None)
    assert followups.dispatches == dispatches + 1  # the dispatcher wakes up for it


def test_a_campaign_a_person_paused_stays_paused(client: TestClient, settings: Settings) -> None:
    cid, _ = launch(settings, 2)
    with session_scope(settings) as session:
        lifecycle.pause_campaign(session, cid, reason="checking the list")
    ok(post_meta(client, status_update("PAUSED")))
    ok(post_meta(client, status_update("APPROVED")))
    stats = campaign(client, cid)
    assert (stats["status"], stats["status_reason"]) == ("paused", "checking the list")


@pytest.mark.parametrize("event", ["DISABLED", "REJECTED", "ARCHIVED", "PENDING_DELETION"])
def test_every_template_state_that_stops_sending_pauses(
    client: TestClient, settings: Settings, event: str
) -> None:
    cid, _ = launch(settings, 1)
    ok(post_meta(client, status_update(event)))
    assert campaign(client, cid)["status"] == "paused"


@pytest.mark.parametrize("event", ["FLAGGED", "LIMIT_EXCEEDED", "IN_APPEAL"])
def test_a_warning_changes_nothing(client: TestClient, settings: Settings, event: str) -> None:
    cid, _ = launch(settings, 1)
    ok(post_meta(client, status_update(event)))
    assert campaign(client, cid)["status"] == "sending"
