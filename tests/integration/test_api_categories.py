"""The categories and audience HTTP API (SPEC sections 3, 5, 6), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from relance.config import Settings
from relance.db import session_scope
from relance.models import Campaign, utcnow
from tests.support.api import row_counts

TABLES = ("contacts", "contact_categories", "categories")


def _category(client: TestClient, name: str, description: str = "") -> dict[str, Any]:
    response = client.post("/api/categories", json={"name": name, "description": description})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _contact(client: TestClient, phone: str, **fields: Any) -> int:
    response = client.post("/api/contacts", json={"phone": phone, **fields})
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def _fields(response: Any) -> list[str]:
    return [error["field"] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/categories"),
        ("POST", "/api/categories"),
        ("GET", "/api/categories/1"),
        ("PATCH", "/api/categories/1"),
        ("DELETE", "/api/categories/1"),
        ("POST", "/api/categories/1/contacts"),
        ("GET", "/api/audience/count"),
    ],
)
def test_every_category_route_needs_a_valid_key(
    client: TestClient, settings: Settings, method: str, path: str
) -> None:
    del client.headers["Authorization"]
    assert client.request(method, path).status_code == 401
    response = client.request(method, path, headers={"Authorization": "Bearer rl_wrong"})
    assert response.status_code == 401
    assert row_counts(settings, *TABLES) == dict.fromkeys(TABLES, 0)


def test_create_answers_201_and_get_reads_it_back(client: TestClient) -> None:
    body = _category(client, "  VIP ", "best customers")
    assert isinstance(body["id"], int)
    assert (body["name"], body["description"], body["contact_count"]) == (
        "VIP",
        "best customers",
        0,
    )
    assert body["created_at"]
    assert client.get(f"/api/categories/{body['id']}").json() == body


def test_duplicate_names_are_409_ignoring_case(client: TestClient, settings: Settings) -> None:
    _category(client, "VIP")
    for name in ("VIP", "vip", " Vip "):
        response = client.post("/api/categories", json={"name": name})
        assert response.status_code == 409, name
        assert "VIP" in response.json()["detail"]
    assert row_counts(settings, "categories")["categories"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "a;b"}, "name"),
        ({"name": 5}, "name"),
        ({"name": "ok", "description": ["x"]}, "description"),
        ({"name": "ok", "extra": 1}, "extra"),
    ],
)
def test_create_with_bad_fields_is_422(
    client: TestClient, settings: Settings, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/categories", json=body)
    assert response.status_code == 422
    assert field in _fields(response)
    assert row_counts(settings, "categories")["categories"] == 0


def test_list_counts_contacts_per_category(client: TestClient) -> None:
    vip, paris, empty = (_category(client, n)["id"] for n in ("VIP", "Paris", "Empty"))
    _contact(client, "0612345678", category_ids=[vip, paris])
    _contact(client, "0698765432", category_ids=[vip])
    body = client.get("/api/categories").json()
    assert body["total"] == 3
    assert [(c["id"], c["contact_count"]) for c in body["items"]] == [
        (vip, 2),
        (paris, 1),
        (empty, 0),
    ]
    page = client.get("/api/categories", params={"limit": 1, "offset": 1}).json()
    assert [c["id"] for c in page["items"]] == [paris]
    assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)
    assert client.get(f"/api/categories/{vip}").json()["contact_count"] == 2
    for params in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"limit": "x"}):
        assert client.get("/api/categories", params=params).status_code == 422


def test_patch_renames_and_describes(client: TestClient, settings: Settings) -> None:
    vip = _category(client, "VIP", "old")
    _category(client, "Paris")
    url = f"/api/categories/{vip['id']}"
    body = client.patch(url, json={"description": "new"}).json()
    assert (body["name"], body["description"]) == ("VIP", "new")
    assert client.patch(url, json={"name": "vip"}).json()["name"] == "vip"
    before = row_counts(settings, *TABLES)
    collision = client.patch(url, json={"name": "PARIS", "description": "changed"})
    assert collision.status_code == 409
    assert client.patch(url, json={"name": ""}).status_code == 422
    assert client.patch(url, json={"nom": "x"}).status_code == 422
    assert client.get(url).json()["description"] == "new"
    assert row_counts(settings, *TABLES) == before


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_and_malformed_category_ids(client: TestClient, method: str) -> None:
    json: dict[str, Any] | None = {} if method == "PATCH" else None
    response = client.request(method, "/api/categories/42", json=json)
    assert response.status_code == 404
    assert response.json() == {"detail": "category 42 not found"}
    for bad in ("abc", "0", str(2**40)):
        response = client.request(method, f"/api/categories/{bad}", json=json)
        assert response.status_code == 422
        assert _fields(response) == ["category_id"]


def test_delete_keeps_the_contacts(client: TestClient, settings: Settings) -> None:
    vip = _category(client, "VIP")["id"]
    contact = _contact(client, "0612345678", category_ids=[vip])
    response = client.delete(f"/api/categories/{vip}")
    assert response.status_code == 204
    assert client.get(f"/api/categories/{vip}").status_code == 404
    assert client.get(f"/api/contacts/{contact}").json()["category_ids"] == []
    assert row_counts(settings, *TABLES) == {
        "contacts": 1,
        "contact_categories": 0,
        "categories": 0,
    }


def _campaign(client: TestClient, name: str, category_ids: list[int], **fields: Any) -> int:
    body = {"name": name, "message_1": "Bonjour", "category_ids": category_ids, **fields}
    response = client.post("/api/campaigns", json=body)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_delete_of_a_category_a_draft_or_scheduled_campaign_uses_is_409_naming_them(
    client: TestClient, settings: Settings
) -> None:
    """Deleting the only category of a scheduled campaign used to answer 204 and empty its
    audience without a word (its category_ids became [])."""
    vip = _category(client, "VIP")["id"]
    other = _category(client, "Other")["id"]
    _contact(client, "0612345678", category_ids=[vip])
    spring = _campaign(client, "Spring", [vip, other])
    tomorrow = (utcnow() + timedelta(days=1)).isoformat()
    summer = _campaign(client, "Summer", [vip], scheduled_at=tomorrow)
    assert client.post(f"/api/campaigns/{summer}/launch").json()["status"] == "scheduled"
    before = row_counts(settings, *TABLES, "campaign_categories")

    response = client.delete(f"/api/categories/{vip}")

    assert response.status_code == 409
    assert response.json() == {
        "detail": f"category {vip} is used by draft or scheduled campaigns "
        f"{spring} 'Spring', {summer} 'Summer': remove it from them first"
    }
    assert row_counts(settings, *TABLES, "campaign_categories") == before
    assert client.get(f"/api/campaigns/{summer}").json()["category_ids"] == [vip]

    # Campaigns already started (or over) have their recipients: they do not hold it.
    assert client.patch(f"/api/campaigns/{spring}", json={"category_ids": [other]}).is_success
    with session_scope(settings) as session:
        started = session.get_one(Campaign, summer)
        started.status, started.completed_at = "completed", utcnow()
    assert client.delete(f"/api/categories/{vip}").status_code == 204
    assert client.get(f"/api/categories/{vip}").status_code == 404
    assert client.get(f"/api/campaigns/{spring}").json()["category_ids"] == [other]


def test_delete_names_the_first_twenty_campaigns_and_counts_the_rest(client: TestClient) -> None:
    vip = _category(client, "VIP")["id"]
    ids = [_campaign(client, f"C{i}", [vip]) for i in range(22)]
    detail = client.delete(f"/api/categories/{vip}").json()["detail"]
    named = ", ".join(f"{cid} 'C{i}'" for i, cid in enumerate(ids[:20]))
    assert detail == (
        f"category {vip} is used by draft or scheduled campaigns {named} and 2 more: "
        "remove it from them first"
    )


def test_add_contacts_links_them_and_answers_the_new_count(client: TestClient) -> None:
    vip = _category(client, "VIP")["id"]
    a = _contact(client, "0612345678", category_ids=[vip])
    b = _contact(client, "0698765432")
    c = _contact(client, "+16502530000")
    response = client.post(f"/api/categories/{vip}/contacts", json={"contact_ids": [a, b, b]})
    assert response.status_code == 200
    assert response.json()["contact_count"] == 2
    again = client.post(f"/api/categories/{vip}/contacts", json={"contact_ids": [a, b, c]})
    assert again.json()["contact_count"] == 3
    assert client.get(f"/api/contacts/{c}").json()["category_ids"] == [vip]


def test_add_contacts_rejections_write_nothing(client: TestClient, settings: Settings) -> None:
    vip = _category(client, "VIP")["id"]
    a = _contact(client, "0612345678")
    before = row_counts(settings, *TABLES)
    unknown = client.post(f"/api/categories/{vip}/contacts", json={"contact_ids": [a, 77, 78]})
    assert unknown.status_code == 422
    assert _fields(unknown) == ["contact_ids"]
    assert "[77, 78]" in unknown.json()["detail"][0]["message"]  # one shape: field, message
    missing = client.post("/api/categories/999/contacts", json={"contact_ids": [a]})
    assert missing.status_code == 404
    bodies: list[dict[str, Any]] = [
        {"contact_ids": []},
        {"contact_ids": ["a"]},
        {},
        {"contact_ids": [0]},
    ]
    for body in bodies:
        response = client.post(f"/api/categories/{vip}/contacts", json=body)
        assert response.status_code == 422, body
    assert row_counts(settings, *TABLES) == before


def test_audience_count_is_distinct_and_leaves_out_opted_out(client: TestClient) -> None:
    vip, paris = _category(client, "VIP")["id"], _category(client, "Paris")["id"]
    a = _contact(client, "0612345678", category_ids=[vip, paris])
    b = _contact(client, "0698765432", category_ids=[paris])
    c = _contact(client, "+16502530000")
    out = _contact(client, "+442079460958", category_ids=[vip])
    assert client.patch(f"/api/contacts/{out}", json={"opted_out": True}).status_code == 200

    def count(**params: Any) -> dict[str, int]:
        response = client.get("/api/audience/count", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, int] = response.json()
        return body

    assert count(category_ids=[vip, paris]) == {"reachable": 2, "opted_out": 1, "total": 3}
    assert count(category_ids=[paris], contact_ids=[a, c]) == {
        "reachable": 3,
        "opted_out": 0,
        "total": 3,
    }
    assert count(contact_ids=[b, out, 9999]) == {"reachable": 1, "opted_out": 1, "total": 2}
    assert count() == {"reachable": 0, "opted_out": 0, "total": 0}
    for bad in ({"category_ids": "x"}, {"contact_ids": 0}, {"contact_ids": 2**40}):
        assert client.get("/api/audience/count", params=bad).status_code == 422


def test_audience_count_bounds_its_id_lists(client: TestClient) -> None:
    """Thousands of ids would overflow the HTTP server's request-head limit (an undocumented
    text/plain 400 from h11): past 500 per list, a documented 422 names the parameter."""
    vip = _category(client, "VIP")["id"]
    _contact(client, "0612345678", category_ids=[vip])
    many = [vip] * 500
    response = client.get("/api/audience/count", params={"category_ids": many})
    assert response.status_code == 200
    assert response.json()["reachable"] == 1
    for name in ("category_ids", "contact_ids"):
        response = client.get("/api/audience/count", params={name: [vip] * 501})
        assert response.status_code == 422
        assert _fields(response) == [name]
    schema = client.get("/openapi.json").json()
    for parameter in schema["paths"]["/api/audience/count"]["get"]["parameters"]:
        assert parameter["schema"]["anyOf"][0]["maxItems"] == 500
