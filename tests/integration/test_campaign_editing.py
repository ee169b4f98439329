"""Managing campaigns before they start (issue 15, item 4): the audience check over every
contact, edits of a scheduled campaign, launch refusals that name their field."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import update

from relance.config import Settings
from relance.db import session_scope
from relance.models import Contact, utcnow
from tests.support.engine import phone, seed_contacts


def _two_contacts_one_city(settings: Settings) -> tuple[int, list[int]]:
    """Two contacts in one category; only the first has a city (the issue's case)."""
    with session_scope(settings) as session:
        category = seed_contacts(session, 2, "two")
        session.execute(
            update(Contact).where(Contact.phone == phone(0)).values(attributes={"city": "Lyon"})
        )
        ids = [c.id for c in session.query(Contact).order_by(Contact.id)]
    return category, ids


def test_the_audience_check_reads_every_contact(client: TestClient, settings: Settings) -> None:
    category, ids = _two_contacts_one_city(settings)
    body = {"message_1": "Bonjour {first_name} de {city}", "category_ids": [category]}
    preview = client.post("/api/preview", json=body).json()
    # The previewed contact has a city: the first contact alone would flag nothing.
    assert preview["missing"] == []
    assert preview["audience_missing"] == [
        {
            "placeholder": "city",
            "contacts": 1,
            "examples": [{"id": ids[1], "phone": phone(1), "name": "Ada1 L"}],
        }
    ]
    with_fallback = {**body, "placeholder_defaults": {"city": "chez vous"}}
    assert client.post("/api/preview", json=with_fallback).json()["audience_missing"] == []
    # Individual contacts count too, without any category.
    only = {"message_1": "{city}", "contact_ids": [ids[1]]}
    assert client.post("/api/preview", json=only).json()["audience_missing"][0]["contacts"] == 1


def test_a_scheduled_campaign_is_edited_until_it_starts(
    client: TestClient, settings: Settings
) -> None:
    category, _ = _two_contacts_one_city(settings)
    later = (utcnow() + timedelta(hours=2)).isoformat()
    created = client.post(
        "/api/campaigns",
        json={
            "name": "s",
            "message_1": "Bonjour",
            "category_ids": [category],
            "scheduled_at": later,
        },
    ).json()
    cid = created["id"]
    assert client.post(f"/api/campaigns/{cid}/launch").json()["status"] == "scheduled"
    r = client.patch(f"/api/campaigns/{cid}", json={"name": "renamed"})
    assert (r.status_code, r.json()["status"], r.json()["name"]) == (200, "scheduled", "renamed")
    # An edit that would make the launch fail is refused whole, naming the field.
    r = client.patch(f"/api/campaigns/{cid}", json={"message_1": "Bonjour {city}"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "placeholder_defaults"
    assert client.get(f"/api/campaigns/{cid}").json()["message_1"] == "Bonjour"
    # Without a time it is a draft again.
    r = client.patch(f"/api/campaigns/{cid}", json={"scheduled_at": None})
    assert (r.status_code, r.json()["status"]) == (200, "draft")
    assert client.post(f"/api/campaigns/{cid}/launch").json()["status"] == "sending"
    assert client.patch(f"/api/campaigns/{cid}", json={"name": "x"}).status_code == 409
