"""Campaign routes on SQLite and PostgreSQL: lifecycle, stats, blocking, errors (SPEC 5, 6)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from relance.campaigns.endpoints import get_followups
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.db import session_scope
from relance.providers.base import PermanentError
from tests.api_helpers import api_client, row_counts
from tests.support.engine import FakeProvider, phone, run_dispatch, seed_contacts

TABLES = ("campaigns", "campaign_categories", "campaign_contacts", "recipients", "messages")


@pytest.fixture
def followups() -> RecordingFollowups:
    return RecordingFollowups()


@pytest.fixture
def client(settings: Settings, followups: RecordingFollowups) -> Iterator[TestClient]:
    c = api_client(settings)
    c.app.dependency_overrides[get_followups] = lambda: followups  # type: ignore[attr-defined]
    yield c


@pytest.fixture
def category_id(settings: Settings) -> int:
    with session_scope(settings) as session:
        return seed_contacts(session, 6)


def _create(client: TestClient, category_id: int, **extra: object) -> dict[str, object]:
    body = {
        "name": "Printemps",
        "message_1": "Bonjour {first_name}",
        "message_2": "Merci {first_name}",
        "category_ids": [category_id],
        **extra,
    }
    r = client.post("/api/campaigns", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_create_launch_follow_complete(
    client: TestClient, settings: Settings, category_id: int, followups: RecordingFollowups
) -> None:
    created = _create(client, category_id, reply_window_seconds=60)
    cid = created["id"]
    assert isinstance(cid, int)
    assert created["status"] == "draft"
    assert created["reply_window_seconds"] == 60
    assert client.get(f"/api/campaigns/{cid}").json()["category_ids"] == [category_id]
    assert client.patch(f"/api/campaigns/{cid}", json={"name": "P2"}).json()["name"] == "P2"

    r = client.post(f"/api/campaigns/{cid}/launch")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "sending"
    assert followups.dispatches == 1
    assert client.post(f"/api/campaigns/{cid}/launch").status_code == 409
    assert client.patch(f"/api/campaigns/{cid}", json={"name": "x"}).status_code == 409

    stats = client.get(f"/api/campaigns/{cid}/stats").json()
    assert (stats["total"], stats["pending"], stats["completed"]) == (6, 6, False)
    blocking = client.get(f"/api/campaigns/{cid}/blocking").json()
    assert blocking["open_recipients"] == 6
    assert all(b["reason"] == "waiting to send Message 1" for b in blocking["items"])

    bad = {phone(0)}
    run_dispatch(
        settings,
        FakeProvider(
            fail=lambda m: PermanentError("131026", "undeliverable") if m.to in bad else None
        ),
    )
    stats = client.get(f"/api/campaigns/{cid}/stats").json()
    assert (stats["message_1_sent"], stats["awaiting_reply"], stats["failed"]) == (5, 5, 1)
    blocking = client.get(f"/api/campaigns/{cid}/blocking").json()
    assert all(b["reason"].startswith("awaiting reply until") for b in blocking["items"])
    failed = client.get(f"/api/campaigns/{cid}/recipients", params={"state": "failed"}).json()
    assert failed["total"] == 1
    assert failed["items"][0]["phone"] == phone(0)
    assert "131026" in failed["items"][0]["last_error"]

    assert client.post(f"/api/campaigns/{cid}/pause").json()["status"] == "paused"
    assert client.post(f"/api/campaigns/{cid}/pause").status_code == 409
    assert client.post(f"/api/campaigns/{cid}/resume").json()["status"] == "sending"

    r = client.post(f"/api/campaigns/{cid}/retry-failed")
    assert r.json() == {"campaign_id": cid, "retried": 1, "status": "sending"}
    run_dispatch(settings, FakeProvider())
    r = client.post(f"/api/campaigns/{cid}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    stats = client.get(f"/api/campaigns/{cid}/stats").json()
    assert (stats["cancelled"], stats["failed"], stats["total"]) == (6, 0, 6)
    assert client.post(f"/api/campaigns/{cid}/cancel").status_code == 409
    assert client.delete(f"/api/campaigns/{cid}").status_code == 204
    assert client.get(f"/api/campaigns/{cid}").status_code == 404


def test_bad_input_is_a_clear_4xx_and_writes_nothing(
    client: TestClient, settings: Settings, category_id: int
) -> None:
    before = row_counts(settings, *TABLES)
    cases = [
        ({"name": "x", "message_1": "hi", "category_ids": [999]}, 422, "category_ids"),
        ({"name": "x", "message_1": "hi", "contact_ids": [12345]}, 422, "contact_ids"),
        ({"name": "", "message_1": "hi"}, 422, "name"),
        ({"name": "x"}, 422, "message_1"),
        ({"name": "x", "message_1": "hi {0}"}, 422, "message_1"),
        ({"name": "x", "message_1": "hi", "reply_window_seconds": -5}, 422, "reply_window_seconds"),
        ({"name": "x", "message_1": "hi", "colour": "red"}, 422, "colour"),
    ]
    for body, code, field in cases:
        r = client.post("/api/campaigns", json=body)
        assert r.status_code == code, (body, r.text)
        assert field in r.text
    r = client.post(
        "/api/campaigns", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert "detail" in r.json()
    assert row_counts(settings, *TABLES) == before
    for path in ("/api/campaigns/999", "/api/campaigns/999/stats", "/api/campaigns/999/blocking"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json() == {"detail": "campaign 999 not found"}
    assert client.post("/api/campaigns/999/launch").status_code == 404
    assert client.get("/api/campaigns/abc").status_code == 422


def test_launch_refuses_empty_audience_and_missing_placeholders(
    client: TestClient, settings: Settings, category_id: int
) -> None:
    empty = client.post("/api/campaigns", json={"name": "e", "message_1": "hi"}).json()
    r = client.post(f"/api/campaigns/{empty['id']}/launch")
    assert r.status_code == 422
    assert "audience is empty" in r.json()["detail"]
    needs_city = _create(client, category_id, message_1="Bonjour {first_name} de {city}")
    before = row_counts(settings, *TABLES)
    r = client.post(f"/api/campaigns/{needs_city['id']}/launch")
    assert r.status_code == 422
    assert "{city} missing for 6 recipient(s)" in r.json()["detail"]
    assert row_counts(settings, *TABLES) == before
    assert client.get(f"/api/campaigns/{needs_city['id']}").json()["status"] == "draft"
    r = client.patch(
        f"/api/campaigns/{needs_city['id']}", json={"placeholder_defaults": {"city": "Lyon"}}
    )
    assert r.status_code == 200
    assert client.post(f"/api/campaigns/{needs_city['id']}/launch").status_code == 200


def test_auth_required(settings: Settings) -> None:
    c = api_client(settings)
    del c.headers["Authorization"]
    assert c.get("/api/campaigns").status_code == 401
    c.headers["Authorization"] = "Bearer rl_wrong"
    assert c.get("/api/campaigns").status_code == 401
    assert c.get("/health").status_code == 200


def test_events_stream_ends_when_completed(
    client: TestClient, settings: Settings, category_id: int
) -> None:
    cid = _create(client, category_id, message_2=None)["id"]
    client.post(f"/api/campaigns/{cid}/launch")
    run_dispatch(settings, FakeProvider())
    with client.stream("GET", f"/api/campaigns/{cid}/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    assert "event: stats" in text
    assert '"completed": true' in text
    assert text.rstrip().endswith("data: {}")


def test_openapi_documents_erased_recipients_and_the_deletion_conflicts(
    client: TestClient,
) -> None:
    """Clients learn from the schema that a deleted contact's recipient shows nulls, and that
    deleting a contact or a category can be refused."""
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for schema, fields in (
        ("RecipientOut", ("contact_id", "phone", "first_name", "last_name")),
        ("BlockingOut", ("contact_id", "phone")),
    ):
        for name in fields:
            field = schemas[schema]["properties"][name]
            assert {"type": "null"} in field["anyOf"], (schema, name)
            assert "contact was deleted" in field["description"], (schema, name)
    for path in ("/api/contacts/{contact_id}", "/api/categories/{category_id}"):
        conflict = doc["paths"][path]["delete"]["responses"]["409"]
        assert "draft or scheduled campaign" in conflict["description"], path
