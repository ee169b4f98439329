"""Campaign routes on SQLite and PostgreSQL: lifecycle, stats, blocking, errors (SPEC 5, 6)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import start_due_scheduled
from relance.config import Settings
from relance.db import get_engine, session_scope
from relance.models import Campaign, Contact, utcnow
from relance.providers.base import PermanentError
from tests.support.api import api_client, row_counts
from tests.support.engine import FakeProvider, make_campaign, phone, run_dispatch, seed_contacts

TABLES = ("campaigns", "campaign_categories", "campaign_contacts", "recipients", "messages")


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
    assert (len(failed["items"]), failed["next"]) == (1, None)
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
    assert r.json()["detail"] == [
        {
            "field": "category_ids",
            "msg": "the audience is empty once opted-out contacts are removed",
        }
    ]
    needs_city = _create(client, category_id, message_1="Bonjour {first_name} de {city}")
    before = row_counts(settings, *TABLES)
    r = client.post(f"/api/campaigns/{needs_city['id']}/launch")
    assert r.status_code == 422
    [problem] = r.json()["detail"]
    assert problem["field"] == "placeholder_defaults"
    assert "{city} missing for 6 recipient(s)" in problem["msg"]
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


def _fields(response: Any) -> list[str]:
    return [error["field"] for error in response.json()["detail"]]


def _set_attributes(settings: Settings, phones: list[str], **attributes: object) -> list[int]:
    """Give these contacts the attributes; their ids, in id order."""
    with session_scope(settings) as session:
        contacts = session.scalars(
            select(Contact).where(Contact.phone.in_(phones)).order_by(Contact.id)
        ).all()
        for contact in contacts:
            contact.attributes = dict(attributes)
        return [c.id for c in contacts]


def _template(*parameters: str) -> dict[str, object]:
    return {"name": "promo", "language": "fr", "parameters": list(parameters)}


TEMPLATE_CASES = [
    (_template("{"), "message_1_template.parameters.0"),
    (_template("ok", "{first name}"), "message_1_template.parameters.1"),
    (_template("x" * 200_000), "message_1_template.parameters.0"),
    (_template("x\x00"), "message_1_template.parameters.0"),
    (_template(*["x"] * 21), "message_1_template.parameters"),
]


def test_template_parameters_are_checked_like_message_texts(
    client: TestClient, settings: Settings, category_id: int
) -> None:
    """A parameter is personalised like Message 1: its placeholders must parse, its length and
    the parameters' count are bounded; at create and at edit, 422 naming the parameter."""
    before = row_counts(settings, *TABLES)
    for template, field in TEMPLATE_CASES:
        body = {"name": "x", "message_1": "hi", "message_1_template": template}
        r = client.post("/api/campaigns", json=body)
        assert r.status_code == 422, (field, r.text)
        assert _fields(r) == [field]
    assert row_counts(settings, *TABLES) == before
    draft = _create(client, category_id, message_1_template=_template("{first_name}"))
    for template, field in TEMPLATE_CASES:
        r = client.patch(f"/api/campaigns/{draft['id']}", json={"message_1_template": template})
        assert r.status_code == 422, (field, r.text)
        assert _fields(r) == [field]
    stored = client.get(f"/api/campaigns/{draft['id']}").json()["message_1_template"]
    assert stored["parameters"] == ["{first_name}"]
    assert client.post(f"/api/campaigns/{draft['id']}/launch").status_code == 200


def test_a_campaign_stored_with_a_broken_parameter_is_refused_at_launch(
    client: TestClient, settings: Settings, category_id: int
) -> None:
    """Stored before the schema refused it: the launch answers 422 naming it, not a 500."""
    with session_scope(settings) as session:
        cid = make_campaign(session, [category_id])
        session.get_one(Campaign, cid).message_1_template = _template("fine", "{")
    r = client.post(f"/api/campaigns/{cid}/launch")
    assert r.status_code == 422
    assert _fields(r) == ["message_1_template.parameters.1"]
    assert client.get(f"/api/campaigns/{cid}").json()["status"] == "draft"


@pytest.mark.parametrize(
    "scheduled_at",
    ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2999-01-01T00:00:00Z"],
)
def test_a_schedule_that_overflows_or_lies_absurdly_far_is_a_422(
    client: TestClient, settings: Settings, category_id: int, scheduled_at: str
) -> None:
    before = row_counts(settings, *TABLES)
    body = {"name": "x", "message_1": "hi", "scheduled_at": scheduled_at}
    r = client.post("/api/campaigns", json=body)
    assert r.status_code == 422
    assert _fields(r) == ["scheduled_at"]
    assert row_counts(settings, *TABLES) == before
    draft = _create(client, category_id)
    r = client.patch(f"/api/campaigns/{draft['id']}", json={"scheduled_at": scheduled_at})
    assert r.status_code == 422
    assert _fields(r) == ["scheduled_at"]
    soon = (utcnow() + timedelta(days=30)).isoformat()
    r = client.patch(f"/api/campaigns/{draft['id']}", json={"scheduled_at": soon})
    assert r.status_code == 200
    assert client.post(f"/api/campaigns/{draft['id']}/launch").json()["status"] == "scheduled"


def test_launch_refuses_texts_too_long_once_personalised(
    client: TestClient, settings: Settings, category_id: int
) -> None:
    """A 10,000-character attribute in Message 1 and in a template parameter: 422 naming each
    text, how many recipients it breaks, the first of them, and WhatsApp's limit."""
    ids = _set_attributes(settings, [phone(2), phone(3), phone(4)], bio="b" * 10_000)
    draft = _create(
        client,
        category_id,
        message_1="Bonjour {bio}",
        message_2="Merci",
        message_1_template=_template("{first_name}", "{bio}"),
        placeholder_defaults={"bio": ""},
    )
    before = row_counts(settings, *TABLES)
    r = client.post(f"/api/campaigns/{draft['id']}/launch")
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == [
        {
            "field": "message_1",
            "msg": "message_1 is up to 10,008 characters once personalised for 3 recipient(s) "
            f"(contact {ids[0]} first); WhatsApp allows 4,096",
        },
        {
            "field": "message_1_template.parameters.1",
            "msg": "message_1_template.parameters.1 is up to 10,000 characters once "
            f"personalised for 3 recipient(s) (contact {ids[0]} first); "
            "a WhatsApp template parameter allows 1,024",
        },
    ]
    assert row_counts(settings, *TABLES) == before
    # Message 2 too; and the campaign launches once nothing is too long.
    r = client.patch(
        f"/api/campaigns/{draft['id']}",
        json={"message_1": "Bonjour", "message_1_template": None, "message_2": "{bio}"},
    )
    assert r.status_code == 200
    r = client.post(f"/api/campaigns/{draft['id']}/launch")
    assert r.status_code == 422
    assert _fields(r) == ["message_2"]
    _set_attributes(settings, [phone(2), phone(3), phone(4)], bio="b" * 4096)
    assert client.post(f"/api/campaigns/{draft['id']}/launch").status_code == 200


def test_launch_reads_no_contact_when_the_longest_rendering_fits(
    client: TestClient, settings: Settings, category_id: int
) -> None:
    """Names are at most 200 characters and defaults cover the placeholders: the launch
    knows every text fits without reading the audience (a launch of 1,000,000 stays fast).
    A placeholder an attribute fills could exceed the limit: then it reads the contacts."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    fits = _create(
        client,
        category_id,
        message_1="Bonjour {first_name} {last_name}" * 10,
        message_1_template=_template("{first_name}"),
        placeholder_defaults={"first_name": "toi", "last_name": ""},
    )
    may_not = _create(
        client, category_id, message_1="Bonjour {bio}", placeholder_defaults={"bio": ""}
    )
    engine = get_engine(settings)
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.post(f"/api/campaigns/{fits['id']}/launch").status_code == 200
        reads_of_fits = [s for s in statements if "contacts.attributes" in s]
        statements.clear()
        assert client.post(f"/api/campaigns/{may_not['id']}/launch").status_code == 200
        reads_of_may_not = [s for s in statements if "contacts.attributes" in s]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert reads_of_fits == []
    assert len(reads_of_may_not) == 1


def test_a_scheduled_campaign_that_cannot_start_is_cancelled_with_the_reason(
    client: TestClient, settings: Settings, category_id: int, followups: RecordingFollowups
) -> None:
    """Its audience opted out after it was scheduled: at its time it ends cancelled, saying
    why, on the API and on the dashboard's page, instead of staying sending for ever."""
    at = utcnow() + timedelta(hours=1)
    cid = _create(client, category_id, scheduled_at=at.isoformat())["id"]
    assert client.post(f"/api/campaigns/{cid}/launch").json()["status"] == "scheduled"
    for contact in client.get("/api/contacts").json()["items"]:
        assert client.patch(f"/api/contacts/{contact['id']}", json={"opted_out": True}).is_success
    with session_scope(settings) as session:
        assert start_due_scheduled(session, settings, followups, at) == []
    out = client.get(f"/api/campaigns/{cid}").json()
    reason = (
        "not started at its scheduled time: "
        "the audience is empty once opted-out contacts are removed"
    )
    assert (out["status"], out["status_reason"], out["total"]) == ("cancelled", reason, 0)
    assert out["cancelled_at"] is not None
    stats = client.get(f"/api/campaigns/{cid}/stats").json()
    assert (stats["status"], stats["status_reason"]) == ("cancelled", reason)
    assert followups.dispatches == 0
    client.cookies.set("relance_api_key", client.headers["Authorization"].removeprefix("Bearer "))
    page = client.get(f"/campaigns/{cid}").text
    assert reason in page
    assert 'data-status="cancelled"' in page


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
