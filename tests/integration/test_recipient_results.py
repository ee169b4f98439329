"""A campaign's results on SQLite and PostgreSQL: filters, keyset pages at their edges, the CSV
export (escaping, BOM, audit), the answers' text."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from relance.campaigns import answers, paging
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.sweeps import expire_windows
from relance.config import Settings
from relance.db import session_scope
from relance.models import AuditEvent, Contact, Recipient, utcnow
from relance.providers.base import PermanentError
from tests.support.engine import FakeProvider, make_campaign, phone, run_dispatch, seed_contacts

N = 10
FAILING = {phone(0): "131026", phone(1): "131026", phone(2): "131049"}
ANSWERS = {phone(3): "Oui merci", phone(4): "👍", phone(5): "image"}


@pytest.fixture
def campaign_id(client: TestClient, settings: Settings) -> int:
    """10 contacts: 3 failed (two 131026, one 131049), 3 answered and got Message 2, 4 await."""
    with session_scope(settings) as session:
        category_id = seed_contacts(session, N)
        session.execute(
            update(Contact).where(Contact.phone == phone(6)).values(first_name="=HYPERLINK(1)")
        )
        cid = make_campaign(session, [category_id])
    assert client.post(f"/api/campaigns/{cid}/launch").status_code == 200
    errors = {p: PermanentError(code, "Message undeliverable") for p, code in FAILING.items()}
    run_dispatch(settings, FakeProvider(fail=lambda m: errors.get(m.to)))
    followups = RecordingFollowups()
    with session_scope(settings) as session:
        for number, said in ANSWERS.items():
            answers.record_interaction(session, settings, followups, number, said=said)
    run_dispatch(settings, FakeProvider())
    return cid


def listing(client: TestClient, cid: int, **params: Any) -> dict[str, Any]:
    r = client.get(f"/api/campaigns/{cid}/recipients", params=params)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def every_page(client: TestClient, cid: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        page = listing(client, cid, **params, **({"after": after} if after else {}))
        items += page["items"]
        after = page["next"]
        if after is None:
            return items


def test_filters_by_states_code_and_text(client: TestClient, campaign_id: int) -> None:
    failed = listing(client, campaign_id, state="failed")["items"]
    assert {r["phone"]: r["error_code"] for r in failed} == FAILING
    assert all("Message undeliverable" in r["error"] for r in failed)
    assert all(r["error"] == r["last_error"] for r in failed)  # today's fields stay

    both = listing(client, campaign_id, state=["failed", "message_2_sent"])["items"]
    assert {r["state"] for r in both} == {"failed", "message_2_sent"}
    assert len(both) == 6
    assert [r["id"] for r in both] == sorted(r["id"] for r in both)
    answered = {r["phone"]: r["reply_text"] for r in both if r["state"] == "message_2_sent"}
    assert answered == ANSWERS

    limited = listing(client, campaign_id, error_code="131049")["items"]
    assert [r["phone"] for r in limited] == [phone(2)]
    assert listing(client, campaign_id, search="OUI")["items"][0]["phone"] == phone(3)
    assert [r["phone"] for r in listing(client, campaign_id, search=phone(7)[4:])["items"]] == [
        phone(7)
    ]
    assert listing(client, campaign_id, search="100%_")["items"] == []  # wildcards are text
    assert len(listing(client, campaign_id, search="undeliverable")["items"]) == 3


@pytest.mark.parametrize("limit", [1, 3, N - 1, N, N + 1])
def test_keyset_pages_cover_every_recipient_once(
    client: TestClient, campaign_id: int, limit: int
) -> None:
    items = every_page(client, campaign_id, limit=limit)
    ids = [r["id"] for r in items]
    assert ids == sorted(ids) and len(ids) == N
    first = listing(client, campaign_id, limit=limit)
    assert (first["next"] is None) == (limit >= N)
    newest_first = every_page(client, campaign_id, limit=limit, sort="-id")
    assert [r["id"] for r in newest_first] == ids[::-1]


@pytest.mark.parametrize("sort", ["replied_at", "-replied_at", "failed_at", "-awaiting_reply_at"])
def test_sorted_by_a_timestamp_with_ties_and_rows_without_it(
    client: TestClient, settings: Settings, campaign_id: int, sort: str
) -> None:
    # Ties: two answers at the very same time must neither repeat nor vanish across pages.
    with session_scope(settings) as session:
        same = session.scalar(select(Recipient.replied_at).where(Recipient.replied_at.is_not(None)))
        session.execute(
            update(Recipient).where(Recipient.replied_at.is_not(None)).values(replied_at=same)
        )
    order = paging.Sort.parse(sort)
    items = every_page(client, campaign_id, limit=2, sort=sort)
    assert sorted(r["id"] for r in items) == sorted(
        r["id"] for r in listing(client, campaign_id, limit=100)["items"]
    )
    column = order.column
    stamped = [r for r in items if r[column] is not None]
    assert items[: len(stamped)] == stamped  # rows without it last
    keys = [(r[column], r["id"]) for r in stamped]
    assert keys == sorted(keys, reverse=order.descending)
    unstamped = [r["id"] for r in items[len(stamped) :]]
    assert unstamped == sorted(unstamped, reverse=order.descending)


def test_bad_cursor_sort_or_state_is_a_422_naming_it(client: TestClient, campaign_id: int) -> None:
    page = listing(client, campaign_id, limit=2, sort="replied_at")
    url = f"/api/campaigns/{campaign_id}/recipients"
    cases = [
        ({"after": "garbage!"}, "after"),
        ({"after": page["next"]}, "after"),  # made for another sort
        ({"after": "x" * 300}, "after"),
        ({"sort": "phone"}, "sort"),
        ({"state": "nope"}, "state.0"),
        ({"limit": 0}, "limit"),
        ({"error_code": "x" * 51}, "error_code.0"),
    ]
    for params, field in cases:
        r = client.get(url, params=params)
        assert r.status_code == 422, (params, r.text)
        assert field in [d["field"] for d in r.json()["detail"]], (params, r.text)
    assert client.get("/api/campaigns/999/recipients").status_code == 404


def test_csv_export_streams_every_row_safe_for_spreadsheets(
    client: TestClient, settings: Settings, campaign_id: int
) -> None:
    r = client.get(f"/api/campaigns/{campaign_id}/recipients.csv")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    raw = r.content
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert len(rows) == N
    by_phone = {row["phone"].removeprefix("'"): row for row in rows}
    assert all(row["phone"].startswith("'+") for row in rows)  # "+33..." would be a formula
    assert by_phone[phone(6)]["first_name"] == "'=HYPERLINK(1)"
    assert by_phone[phone(4)]["reply_text"] == "👍"
    assert by_phone[phone(0)]["error_code"] == "131026"

    only = client.get(
        f"/api/campaigns/{campaign_id}/recipients.csv", params={"state": "failed"}
    ).content
    assert len(list(csv.reader(io.StringIO(only.decode("utf-8-sig"))))) == 1 + len(FAILING)
    with session_scope(settings) as session:
        exports = session.scalars(select(AuditEvent).where(AuditEvent.action == "export")).all()
        assert [e.target for e in exports] == [f"campaign:{campaign_id}"] * 2
        assert exports[1].detail["state"] == ["failed"]
    assert client.get("/api/campaigns/999/recipients.csv").status_code == 404


def test_a_completed_campaign_keeps_its_list(
    client: TestClient, settings: Settings, campaign_id: int
) -> None:
    with session_scope(settings) as session:
        session.execute(
            update(Recipient)
            .where(Recipient.state == "awaiting_reply")
            .values(window_closes_at=utcnow())
        )
    with session_scope(settings) as session:
        expire_windows(session)
    stats = client.get(f"/api/campaigns/{campaign_id}/stats").json()
    assert stats["completed"] and stats["completed_at"] and stats["cancelled_at"] is None
    assert len(listing(client, campaign_id, state="no_interaction")["items"]) == 4


def test_stats_say_rates_time_to_reply_and_when_it_ends(
    client: TestClient, campaign_id: int
) -> None:
    stats = client.get(f"/api/campaigns/{campaign_id}/stats").json()
    sent = N - len(FAILING)
    assert stats["rates"]["reply"] == round(len(ANSWERS) / sent, 4)
    assert stats["rates"]["message_2"] == 1.0
    assert stats["reply_time"]["replies"] == len(ANSWERS) == stats["reply_time"]["sampled"]
    assert 0 <= stats["reply_time"]["median_seconds"] <= stats["reply_time"]["p90_seconds"]
    # Every Message 1 is sent: it ends when the last window closes (an hour after its send).
    ends = datetime.fromisoformat(stats["estimated_finish_at"])
    assert timedelta(minutes=59) < ends - utcnow() <= timedelta(hours=1)
    assert client.post(f"/api/campaigns/{campaign_id}/pause").status_code == 200
    assert client.get(f"/api/campaigns/{campaign_id}/stats").json()["estimated_finish_at"] is None


def test_contacts_export_follows_the_listing_filters(
    client: TestClient, settings: Settings
) -> None:
    with session_scope(settings) as session:
        clients = seed_contacts(session, 3, "clients")
        seed_contacts(session, 2, "vip", start=3)
        session.execute(
            update(Contact)
            .where(Contact.phone == phone(1))
            .values(first_name="@SUM(A1)", attributes={"city": "Lyon"})
        )
    r = client.get("/api/contacts.csv", params={"category_id": clients})
    assert r.status_code == 200, r.text
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    assert [row["phone"] for row in rows] == [f"'{phone(i)}" for i in range(3)]
    assert rows[1]["first_name"] == "'@SUM(A1)"
    assert rows[1]["attributes"] == '{"city": "Lyon"}'
    assert {row["categories"] for row in rows} == {"clients"}
    everyone = client.get("/api/contacts.csv").content.decode("utf-8-sig")
    assert len(list(csv.reader(io.StringIO(everyone)))) == 1 + 5
    found = client.get("/api/contacts.csv", params={"search": phone(4)}).content
    assert len(list(csv.reader(io.StringIO(found.decode("utf-8-sig"))))) == 2
    assert client.get("/api/contacts.csv", params={"category_id": 0}).status_code == 422
    with session_scope(settings) as session:
        targets = session.scalars(
            select(AuditEvent.target).where(AuditEvent.action == "export")
        ).all()
        assert targets == ["contacts"] * 3
