"""The contacts HTTP API (SPEC sections 3, 5, 6), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from relance.campaigns import sweeps
from relance.campaigns.followups import RecordingFollowups
from relance.config import Settings
from relance.db import session_scope
from relance.deps import get_followups
from relance.models import Base, Campaign, Contact, InboundEvent, Message, Recipient, utcnow
from relance.providers.base import PermanentError
from tests.integration.test_webhooks_api import (
    message_body,
    post_meta,
    sent_messages,
    status_body,
    status_entry,
    statuses_body,
    use_provider,
)
from tests.support.api import api_client, row_counts
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    later,
    make_campaign,
    run_dispatch,
    seed_contacts,
)
from tests.support.engine import phone as nth_phone

TABLES = ("contacts", "contact_categories", "categories")


def _category(client: TestClient, name: str) -> int:
    response = client.post("/api/categories", json={"name": name})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _contact(client: TestClient, phone: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/contacts", json={"phone": phone, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _fields(response: Any) -> list[str]:
    return [error["field"] for error in response.json()["detail"]]


# Authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/contacts"),
        ("POST", "/api/contacts"),
        ("GET", "/api/contacts/1"),
        ("PATCH", "/api/contacts/1"),
        ("DELETE", "/api/contacts/1"),
        ("POST", "/api/contacts/import"),
    ],
)
def test_every_contact_route_needs_a_valid_key(
    client: TestClient, settings: Settings, method: str, path: str
) -> None:
    key = client.headers.pop("Authorization")
    assert client.request(method, path).status_code == 401
    response = client.request(method, path, headers={"Authorization": "Bearer rl_not-a-key"})
    assert response.status_code == 401
    assert "detail" in response.json()
    basic = client.request(method, path, headers={"Authorization": key.replace("Bearer", "Basic")})
    assert basic.status_code == 401
    assert row_counts(settings, *TABLES) == dict.fromkeys(TABLES, 0)


# Create ---------------------------------------------------------------------------------


def test_create_normalises_the_phone_and_answers_201(client: TestClient) -> None:
    vip = _category(client, "VIP")
    body = _contact(
        client,
        "06 12 34 56 78",
        first_name=" Camille ",
        last_name="Martin",
        attributes={"city": "Lyon", "visits": 3, "vip": True},
        category_ids=[vip, vip],
    )
    assert isinstance(body["id"], int)
    assert body["phone"] == "+33612345678"
    assert body["first_name"] == "Camille"
    assert body["last_name"] == "Martin"
    assert body["attributes"] == {"city": "Lyon", "visits": 3, "vip": True}
    assert body["category_ids"] == [vip]
    assert body["opted_out"] is False
    assert body["opted_out_at"] is None
    assert body["created_at"]
    assert client.get(f"/api/contacts/{body['id']}").json() == body


def test_create_with_an_invalid_phone_is_422_naming_phone(
    client: TestClient, settings: Settings
) -> None:
    for phone in ("12345", "not a number", "", "+336123456789"):
        response = client.post("/api/contacts", json={"phone": phone})
        assert response.status_code == 422, phone
        assert _fields(response) == ["phone"]
    assert row_counts(settings, "contacts")["contacts"] == 0


def test_create_with_a_taken_phone_is_409_and_writes_nothing(
    client: TestClient, settings: Settings
) -> None:
    vip = _category(client, "VIP")
    _contact(client, "+33612345678")
    before = row_counts(settings, *TABLES)
    response = client.post("/api/contacts", json={"phone": "06.12.34.56.78", "category_ids": [vip]})
    assert response.status_code == 409
    assert "+33612345678" in response.json()["detail"]
    assert row_counts(settings, *TABLES) == before


def test_create_with_an_unknown_category_is_422_and_writes_nothing(
    client: TestClient, settings: Settings
) -> None:
    vip = _category(client, "VIP")
    response = client.post(
        "/api/contacts", json={"phone": "0612345678", "category_ids": [vip, 999, 998]}
    )
    assert response.status_code == 422
    assert _fields(response) == ["category_ids"]
    assert response.json()["detail"][0]["ids"] == [998, 999]
    assert row_counts(settings, *TABLES) == {
        "contacts": 0,
        "contact_categories": 0,
        "categories": 1,
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "phone"),
        ({"phone": 612345678}, "phone"),
        ({"phone": "0612345678", "first_name": 3}, "first_name"),
        ({"phone": "0612345678", "first_name": "x" * 201}, "first_name"),
        ({"phone": "0612345678", "last_name": "nul\x00"}, "last_name"),
        ({"phone": "0612345678", "attributes": ["a"]}, "attributes"),
        ({"phone": "0612345678", "attributes": {"a": {"nested": 1}}}, "attributes.a"),
        ({"phone": "0612345678", "category_ids": ["one"]}, "category_ids.0"),
        ({"phone": "0612345678", "category_ids": [0]}, "category_ids.0"),
        ({"phone": "0612345678", "category_ids": [2**40]}, "category_ids.0"),
        ({"phone": "0612345678", "colour": "red"}, "colour"),
    ],
)
def test_create_with_wrong_types_is_422_naming_the_field(
    client: TestClient, settings: Settings, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/contacts", json=body)
    assert response.status_code == 422
    assert field in _fields(response)
    assert row_counts(settings, "contacts")["contacts"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b'["0612345678"]',
        b'{"phone": "0612345678", "attributes": {"x": NaN}}',
        b'{"phone": "0612345678", "attributes": {"x": Infinity}}',
        b"",
    ],
)
def test_create_with_a_malformed_body_is_422(
    client: TestClient, settings: Settings, raw: bytes
) -> None:
    response = client.post(
        "/api/contacts", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "detail" in response.json()
    assert row_counts(settings, "contacts")["contacts"] == 0


# List -----------------------------------------------------------------------------------


def test_list_paginates_in_id_order_with_the_total(client: TestClient) -> None:
    ids = [_contact(client, f"+3361234560{i}")["id"] for i in range(5)]
    body = client.get("/api/contacts", params={"limit": 2, "offset": 1}).json()
    assert [c["id"] for c in body["items"]] == ids[1:3]
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 1)
    default = client.get("/api/contacts").json()
    assert (default["total"], default["limit"], default["offset"]) == (5, 50, 0)
    assert len(client.get("/api/contacts", params={"offset": 10}).json()["items"]) == 0


def test_list_filters_by_category_and_searches_names_and_phones(client: TestClient) -> None:
    vip = _category(client, "VIP")
    camille = _contact(
        client, "0612345678", first_name="Camille", last_name="Martin", category_ids=[vip]
    )
    bob = _contact(client, "0698765432", first_name="Bob", last_name="Camus")
    gus = _contact(client, "+16502530000", first_name="Gus", last_name="100%_sure")

    def ids(**params: Any) -> list[int]:
        response = client.get("/api/contacts", params=params)
        assert response.status_code == 200, response.text
        return [c["id"] for c in response.json()["items"]]

    assert ids(category_id=vip) == [camille["id"]]
    assert ids(category_id=vip + 100) == []
    assert ids(search="CAM") == [camille["id"], bob["id"]]
    assert ids(search="camille martin") == [camille["id"]]
    assert ids(search="98765") == [bob["id"]]
    assert ids(search="06 12 34 56 78") == [camille["id"]]
    assert ids(search="%") == [gus["id"]]
    assert ids(search="_") == [gus["id"]]
    assert ids(search="cam", category_id=vip) == [camille["id"]]
    assert client.get("/api/contacts", params={"search": "cam"}).json()["total"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"limit": 10**30},
        {"limit": "ten"},
        {"offset": -1},
        {"offset": 10**30},
        {"category_id": "x"},
        {"category_id": 0},
        {"search": "x" * 201},
        {"search": "a\x00b"},
    ],
)
def test_list_with_bad_parameters_is_422(client: TestClient, params: dict[str, Any]) -> None:
    response = client.get("/api/contacts", params=params)
    assert response.status_code == 422
    assert _fields(response) == list(params)


# Get / patch / delete -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_and_malformed_ids(client: TestClient, method: str) -> None:
    json: dict[str, Any] | None = {} if method == "PATCH" else None
    response = client.request(method, "/api/contacts/999", json=json)
    assert response.status_code == 404
    assert response.json() == {"detail": "contact 999 not found"}
    for bad in ("abc", "1.5", "0", "-3", str(2**63)):
        response = client.request(method, f"/api/contacts/{bad}", json=json)
        assert response.status_code == 422, bad
        assert _fields(response) == ["contact_id"]


def test_patch_changes_the_given_fields_only(client: TestClient) -> None:
    vip, paris = _category(client, "VIP"), _category(client, "Paris")
    contact = _contact(
        client,
        "0612345678",
        first_name="Camille",
        last_name="Martin",
        attributes={"city": "Lyon"},
        category_ids=[vip],
    )
    url = f"/api/contacts/{contact['id']}"
    response = client.patch(url, json={"first_name": "Cam", "last_name": None})
    assert response.status_code == 200
    body = response.json()
    assert (body["first_name"], body["last_name"], body["attributes"]) == (
        "Cam",
        "Martin",
        {"city": "Lyon"},
    )
    assert body["category_ids"] == [vip]
    body = client.patch(
        url,
        json={
            "phone": "+33 6 98 76 54 32",
            "attributes": {"plan": "gold"},
            "category_ids": [paris],
        },
    ).json()
    assert body["phone"] == "+33698765432"
    assert body["attributes"] == {"plan": "gold"}
    assert body["category_ids"] == [paris]
    assert client.get(url).json() == body
    assert client.patch(url, json={"category_ids": []}).json()["category_ids"] == []


def test_patch_opted_out_sets_and_clears_opted_out_at(client: TestClient) -> None:
    url = f"/api/contacts/{_contact(client, '0612345678')['id']}"
    first = client.patch(url, json={"opted_out": True}).json()
    assert first["opted_out"] is True
    assert first["opted_out_at"] is not None
    again = client.patch(url, json={"opted_out": True}).json()
    assert again["opted_out_at"] == first["opted_out_at"]
    cleared = client.patch(url, json={"opted_out": False}).json()
    assert (cleared["opted_out"], cleared["opted_out_at"]) == (False, None)


def test_patch_rejections_change_nothing(client: TestClient, settings: Settings) -> None:
    vip = _category(client, "VIP")
    _contact(client, "0698765432")
    contact = _contact(client, "0612345678", first_name="Camille", category_ids=[vip])
    url = f"/api/contacts/{contact['id']}"
    before = row_counts(settings, *TABLES)

    collision = client.patch(url, json={"phone": "+33698765432", "first_name": "X"})
    assert collision.status_code == 409
    bad_phone = client.patch(url, json={"phone": "123", "first_name": "X"})
    assert bad_phone.status_code == 422
    assert _fields(bad_phone) == ["phone"]
    bad_category = client.patch(url, json={"category_ids": [999], "first_name": "X"})
    assert bad_category.status_code == 422
    assert _fields(bad_category) == ["category_ids"]
    assert client.patch(url, json={"opted_out": "maybe"}).status_code == 422
    assert client.patch(url, json={"id": 5}).status_code == 422
    assert (
        client.patch(url, content=b"nope", headers={"Content-Type": "application/json"}).status_code
        == 422
    )

    assert client.get(url).json() == contact
    assert row_counts(settings, *TABLES) == before
    # Its own phone, written differently, is not a collision.
    same = client.patch(url, json={"phone": "06 12 34 56 78"})
    assert same.status_code == 200
    assert same.json()["phone"] == "+33612345678"


def test_delete_answers_204_and_removes_the_links(client: TestClient, settings: Settings) -> None:
    vip = _category(client, "VIP")
    contact = _contact(client, "0612345678", category_ids=[vip])
    response = client.delete(f"/api/contacts/{contact['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert client.get(f"/api/contacts/{contact['id']}").status_code == 404
    assert row_counts(settings, *TABLES) == {
        "contacts": 0,
        "contact_categories": 0,
        "categories": 1,
    }


def test_delete_of_a_contact_a_running_campaign_waits_on_is_409(
    client: TestClient, settings: Settings
) -> None:
    waiting = _contact(client, "0612345678")
    finished = _contact(client, "0698765432")
    with session_scope(settings) as session:
        campaign = Campaign(
            name="c", message_1="hi", reply_window_seconds=60, status="sending", total=2
        )
        session.add(campaign)
        session.flush()
        session.add(
            Recipient(campaign_id=campaign.id, contact_id=waiting["id"], state="awaiting_reply")
        )
        session.add(Recipient(campaign_id=campaign.id, contact_id=finished["id"], state="failed"))
        campaign_id = campaign.id
    response = client.delete(f"/api/contacts/{waiting['id']}")
    assert response.status_code == 409
    assert str(campaign_id) in response.json()["detail"]
    assert row_counts(settings, "contacts", "recipients") == {"contacts": 2, "recipients": 2}
    # Its recipient in that campaign is final: the contact goes, the recipient stays, anonymised.
    assert client.delete(f"/api/contacts/{finished['id']}").status_code == 204
    assert row_counts(settings, "contacts", "recipients") == {"contacts": 1, "recipients": 2}
    with session_scope(settings) as session:
        states = session.execute(
            select(Recipient.state, Recipient.contact_id).order_by(Recipient.id)
        ).all()
    assert [tuple(row) for row in states] == [("awaiting_reply", waiting["id"]), ("failed", None)]


def _campaign(client: TestClient, name: str, **fields: Any) -> int:
    response = client.post("/api/campaigns", json={"name": name, "message_1": "Bonjour", **fields})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_delete_of_a_contact_listed_in_a_draft_or_scheduled_campaign_is_409_naming_them(
    client: TestClient, settings: Settings
) -> None:
    """Deleting it would shrink (or empty) the audience of a campaign not started yet, unsaid."""
    vip = _category(client, "VIP")
    listed = _contact(client, "0612345678", category_ids=[vip])["id"]
    other = _contact(client, "0698765432")["id"]
    spring = _campaign(client, "Spring", contact_ids=[listed, other])
    tomorrow = (utcnow() + timedelta(days=1)).isoformat()
    summer = _campaign(client, "Summer", contact_ids=[listed], scheduled_at=tomorrow)
    assert client.post(f"/api/campaigns/{summer}/launch").json()["status"] == "scheduled"
    autumn = _campaign(client, "Autumn", category_ids=[vip])  # reaches it through VIP only
    before = row_counts(settings, *TABLES, "campaign_contacts", "campaign_categories")

    response = client.delete(f"/api/contacts/{listed}")

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"contact {listed} is listed in draft or scheduled campaigns "
        f"{spring} 'Spring', {summer} 'Summer': remove it from them first"
    }
    assert row_counts(settings, *TABLES, "campaign_contacts", "campaign_categories") == before
    assert client.get(f"/api/campaigns/{spring}").json()["contact_ids"] == [listed, other]
    assert client.get(f"/api/campaigns/{summer}").json()["contact_ids"] == [listed]

    # Out of their lists, it can go; belonging to a category a draft uses does not hold it.
    assert client.patch(f"/api/campaigns/{spring}", json={"contact_ids": [other]}).is_success
    response = client.delete(f"/api/contacts/{listed}")
    assert response.status_code == 409
    assert response.json()["detail"].endswith(
        f"campaigns {summer} 'Summer': remove it from them first"
    )
    assert client.delete(f"/api/campaigns/{summer}").status_code == 204
    assert client.delete(f"/api/contacts/{listed}").status_code == 204
    assert client.get(f"/api/campaigns/{autumn}").json()["category_ids"] == [vip]


def _every_value(settings: Settings) -> str:
    """Every row of every table, as text: where a phone number would show if kept anywhere."""
    with session_scope(settings) as session:
        return "\n".join(
            repr(tuple(row))
            for table in Base.metadata.sorted_tables
            for row in session.execute(select(table))
        )


def test_deleting_contacts_of_a_completed_campaign_erases_them_and_keeps_its_numbers(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right to erasure without rewriting history: 9 recipients stay 9, the counters still
    match a recount, and neither number is left anywhere in the database."""
    settings = use_provider(monkeypatch, "meta")  # the webhooks below are Meta's
    followups = RecordingFollowups()
    client = api_client(settings)
    client.app.dependency_overrides[get_followups] = lambda: followups  # type: ignore[attr-defined]
    with session_scope(settings) as session:
        cid = make_campaign(session, [seed_contacts(session, 9)])
    assert client.post(f"/api/campaigns/{cid}/launch").json()["status"] == "sending"
    failing, answering = nth_phone(0), nth_phone(1)
    # Twilio-like: the provider's error text quotes the number.
    provider = FakeProvider(
        fail=lambda m: (
            PermanentError("63024", f"Invalid message recipient whatsapp:{m.to}")
            if m.to == failing
            else None
        )
    )
    run_dispatch(settings, provider, followups)
    sent = next(s for s in sent_messages(settings, cid) if s.phone == answering)
    for status in ("delivered", "read"):
        assert post_meta(client, status_body(sent, status)).status_code == 200
    reply = message_body("webhook_text_reply.json", answering, sent.provider_message_id)
    assert post_meta(client, reply).json()["matched"] == 1
    run_dispatch(settings, provider, followups, message_ids=followups.sent)
    with session_scope(settings) as session:
        m2 = session.execute(
            select(Message.id, Message.provider_message_id).where(Message.kind == "message_2")
        ).one()
    delivered = status_entry(m2.provider_message_id, "delivered", answering, m2.id)
    assert post_meta(client, statuses_body(delivered)).status_code == 200
    with session_scope(settings) as session:
        assert sweeps.expire_windows(session, now=later(7200)) == 7
    stats = client.get(f"/api/campaigns/{cid}/stats").json()
    assert (stats["completed"], stats["total"], stats["message_2_sent"], stats["failed"]) == (
        True,
        9,
        1,
        1,
    )
    listing = client.get(f"/api/campaigns/{cid}/recipients").json()["items"]
    kept = {r["phone"]: r for r in listing if r["phone"] in (failing, answering)}
    tables = ("recipients", "messages", "inbound_events")
    rows_before = row_counts(settings, *tables)
    assert failing[1:] in _every_value(settings)  # the dump does see numbers

    with session_scope(settings) as session:
        ids = dict(session.execute(select(Contact.phone, Contact.id)).tuples().all())
    for number in (failing, answering):
        assert client.delete(f"/api/contacts/{ids[number]}").status_code == 204

    assert client.get(f"/api/contacts/{ids[answering]}").status_code == 404
    assert client.get(f"/api/campaigns/{cid}/stats").json() == stats
    assert row_counts(settings, *tables) == rows_before
    assert_counters_match_rows(settings, cid)
    after = client.get(f"/api/campaigns/{cid}/recipients").json()
    assert (len(after["items"]), after["next"]) == (9, None)
    anonymised = [r for r in after["items"] if r["contact_id"] is None]
    assert [r["id"] for r in anonymised] == sorted(r["id"] for r in kept.values())
    personal = {"contact_id", "phone", "first_name", "last_name"}
    not_kept = personal | {"last_error", "error", "reply_text"}
    for recipient in anonymised:
        before = next(r for r in kept.values() if r["id"] == recipient["id"])
        assert all(recipient[k] is None for k in personal)
        # States and times stay: the history is the campaign's, not the contact's.
        assert {k: v for k, v in recipient.items() if k not in not_kept} == {
            k: v for k, v in before.items() if k not in not_kept
        }
        assert recipient["reply_text"] == ("[erased]" if before["reply_text"] else None)
    assert kept[answering]["reply_text"]  # what the contact wrote, until it was erased
    failed = next(r for r in anonymised if r["state"] == "failed")
    assert failed["last_error"] == "63024: Invalid message recipient whatsapp:+[erased]"
    everything = _every_value(settings)
    for number in (failing, answering):
        assert number[1:] not in everything
    assert nth_phone(2)[1:] in everything  # the others are untouched
    with session_scope(settings) as session:
        erased = session.scalars(
            select(InboundEvent.payload).where(InboundEvent.recipient_id == sent.recipient_id)
        ).all()
    assert erased == [{"erased": True}] * 4  # delivered, read, the reply, Message 2 delivered
    blocking = client.get(f"/api/campaigns/{cid}/blocking")
    assert (blocking.status_code, blocking.json()["open_recipients"]) == (200, 0)
    # Nobody is left to send to: a retry finds nothing and changes nothing.
    assert client.post(f"/api/campaigns/{cid}/retry-failed").status_code == 409
    assert client.get(f"/api/campaigns/{cid}/stats").json() == stats
