"""CSV import of contacts (SPEC section 3: report every rejected row, import the rest)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from relance.config import Settings
from relance.contacts.csv_import import import_contacts
from relance.contacts.schemas import MAX_REJECTED_LISTED
from relance.errors import Invalid
from tests.support.api import api_client, row_counts

FIXTURE = Path(__file__).parent.parent / "fixtures" / "contacts_import.csv"
TABLES = ("contacts", "contact_categories", "categories")


def _import(
    client: TestClient, content: bytes, expected_status: int = 200, **kwargs: Any
) -> dict[str, Any]:
    response = client.post(
        "/api/contacts/import", files={"file": ("contacts.csv", content, "text/csv")}, **kwargs
    )
    assert response.status_code == expected_status, response.text
    body: dict[str, Any] = response.json()
    return body


def _contacts(client: TestClient) -> dict[str, dict[str, Any]]:
    items = client.get("/api/contacts", params={"limit": 1000}).json()["items"]
    return {c["phone"]: c for c in items}


def _category_ids(client: TestClient) -> dict[str, int]:
    return {c["name"]: c["id"] for c in client.get("/api/categories").json()["items"]}


def test_the_fixture_file_imports_good_rows_and_reports_bad_ones(
    client: TestClient, settings: Settings
) -> None:
    result = _import(client, FIXTURE.read_bytes())
    assert result == {
        "created": 5,
        "updated": 0,
        "rejected": [
            {"row": 4, "error": "phone: not a valid phone number: '12345'"},
            {"row": 7, "error": "duplicate of row 2"},
            {"row": 8, "error": "phone: not a phone number: 'not a number'"},
            {"row": 9, "error": "phone: phone number is empty"},
            {"row": 13, "error": "duplicate of row 3"},
        ],
        "rejected_total": 5,
    }
    categories = _category_ids(client)
    assert set(categories) == {"VIP", "Paris", "Clients"}
    contacts = _contacts(client)
    assert set(contacts) == {
        "+33612345678",
        "+33698765432",
        "+33611223344",
        "+33781234567",
        "+16502530000",
    }
    camille = contacts["+33612345678"]
    # Line 7 repeats line 2's phone: rejected, it changes nothing of line 2's contact.
    assert (camille["first_name"], camille["last_name"]) == ("Camille", "Martin")
    assert camille["attributes"] == {"city": "Lyon", "plan": "gold"}
    assert camille["category_ids"] == [categories["VIP"]]
    bob = contacts["+33698765432"]
    assert (bob["first_name"], bob["last_name"]) == ("Bob", "Durand")
    assert bob["attributes"] == {"city": "Paris"}
    assert bob["category_ids"] == sorted([categories["VIP"], categories["Paris"]])
    assert contacts["+33611223344"]["first_name"] == "Chloé"
    assert contacts["+33781234567"]["category_ids"] == [categories["Clients"]]
    assert contacts["+16502530000"]["attributes"] == {"city": "Mountain View"}
    assert row_counts(settings, *TABLES) == {
        "contacts": 5,
        "contact_categories": 4,
        "categories": 3,
    }


def test_importing_again_updates_and_keeps_opt_outs_and_extra_attributes(
    client: TestClient, settings: Settings
) -> None:
    existing = client.post(
        "/api/contacts",
        json={"phone": "+33611223344", "first_name": "Old", "attributes": {"vip": True}},
    ).json()
    client.patch(f"/api/contacts/{existing['id']}", json={"opted_out": True})
    first = _import(client, FIXTURE.read_bytes())
    assert (first["created"], first["updated"], first["rejected_total"]) == (4, 1, 5)
    chloe = client.get(f"/api/contacts/{existing['id']}").json()
    assert chloe["first_name"] == "Chloé"
    assert chloe["attributes"] == {"vip": True, "city": "Marseille", "plan": "silver"}
    assert chloe["opted_out"] is True
    second = _import(client, FIXTURE.read_bytes())
    assert (second["created"], second["updated"], second["rejected_total"]) == (0, 5, 5)
    assert row_counts(settings, *TABLES) == {
        "contacts": 5,
        "contact_categories": 4,
        "categories": 3,
    }


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_comma_separated_without_bom_and_quoted_cells(client: TestClient, newline: str) -> None:
    text = newline.join(
        [
            "Phone,First Name,last-name,Categories,Note",
            '0612345678,"Martin, Camille",M,"A; B","line one',
            'line two"',
            "0698765432,Bob,,,",
            "0700,Bad,,,",
        ]
    )
    result = _import(client, text.encode())
    assert result["created"] == 2
    # The quoted note spans lines 2 and 3: the next rows are lines 4 and 5.
    assert result["rejected"] == [{"row": 5, "error": "phone: not a valid phone number: '0700'"}]
    camille = _contacts(client)["+33612345678"]
    assert camille["first_name"] == "Martin, Camille"
    assert camille["attributes"] == {"Note": f"line one{newline}line two"}
    assert len(camille["category_ids"]) == 2
    assert set(_category_ids(client)) == {"A", "B"}


def test_rows_with_too_many_fields_and_long_names_are_rejected(client: TestClient) -> None:
    text = "\n".join(
        [
            "phone;first_name",
            "0612345678;Camille;extra",
            "0698765432;Bob;;",
            f"+16502530000;{'x' * 201}",
        ]
    )
    result = _import(client, text.encode())
    assert result == {
        "created": 1,
        "updated": 0,
        "rejected": [
            {"row": 2, "error": "3 fields, but the header has 2"},
            {"row": 4, "error": "first_name: longer than 200 characters"},
        ],
        "rejected_total": 2,
    }


@pytest.mark.parametrize("how", ["query", "form"])
def test_category_id_puts_every_imported_contact_in_it(client: TestClient, how: str) -> None:
    club = client.post("/api/categories", json={"name": "Club"}).json()["id"]
    text = b"phone,categories\n0612345678,VIP\n0698765432,\n"
    args: dict[str, Any] = {"params" if how == "query" else "data": {"category_id": club}}
    assert _import(client, text, **args)["created"] == 2
    for contact in _contacts(client).values():
        assert club in contact["category_ids"]
    assert client.get(f"/api/categories/{club}").json()["contact_count"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xef\xbb\xbf\n\n", "empty"),
        (b";;;\n", "empty"),
        ("phone,nom\n0612345678,Müller\n".encode("latin-1"), "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
        (b"phone,name\n0612345678,a\x00b\n", "NUL"),
        (b"first_name,last_name\nCamille,Martin\n", "no 'phone' column"),
        (b"phone,city,City ,city\n0612345678,a,b,c\n", "appears twice"),
        (b"Phone,PHONE\n0612345678,0698765432\n", "appears twice"),
        (b"phone\n0612345678\n" + b"x" * 1_000_001, "longer than 1,000,000 characters"),
        (b'phone,note\n0612345678,"never closed\n' + b"x\n" * 70_000, "not readable as CSV"),
    ],
)
def test_a_file_that_is_not_a_usable_csv_is_422_and_writes_nothing(
    client: TestClient, settings: Settings, content: bytes, message: str
) -> None:
    response = client.post(
        "/api/contacts/import", files={"file": ("contacts.csv", content, "text/csv")}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail[0]["field"] == "file"
    assert message in detail[0]["message"]
    assert row_counts(settings, *TABLES) == dict.fromkeys(TABLES, 0)


def test_bad_requests_are_422_and_write_nothing(client: TestClient, settings: Settings) -> None:
    csv = FIXTURE.read_bytes()
    unknown = client.post(
        "/api/contacts/import",
        files={"file": ("c.csv", csv, "text/csv")},
        params={"category_id": 999},
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"][0]["field"] == "category_id"
    for params in ({"category_id": "x"}, {"category_id": 0}):
        response = client.post(
            "/api/contacts/import", files={"file": ("c.csv", csv, "text/csv")}, params=params
        )
        assert response.status_code == 422
    no_file = client.post("/api/contacts/import", data={"category_id": "1"})
    assert no_file.status_code == 422
    assert no_file.json()["detail"][0]["field"] == "file"
    as_json = client.post("/api/contacts/import", json={"file": "phone\n0612345678"})
    assert as_json.status_code == 422
    assert row_counts(settings, *TABLES) == dict.fromkeys(TABLES, 0)


def test_batches_commit_one_after_the_other(settings: Settings) -> None:
    rows = [f"+3361234{i:04d},N{i},,G{i % 3}" for i in range(23)]
    content = ("phone,first_name,last_name,categories\n" + "\n".join(rows)).encode()
    result = import_contacts(settings, io.BytesIO(content), batch_size=5)
    assert (result.created, result.updated, result.rejected, result.rejected_total) == (
        23,
        0,
        [],
        0,
    )
    again = import_contacts(settings, io.BytesIO(content), batch_size=4)
    assert (again.created, again.updated) == (0, 23)
    assert row_counts(settings, *TABLES) == {
        "contacts": 23,
        "contact_categories": 23,
        "categories": 3,
    }
    with pytest.raises(Invalid):
        import_contacts(settings, io.BytesIO(b"name\nx\n"))


def test_twenty_thousand_rows(client: TestClient, settings: Settings) -> None:
    n = 20_000
    lines = ["phone;first_name;last_name;categories;city"]
    lines += [
        f"+33 6 {i // 10000:02d} {i % 10000:04d} 00;F{i};L{i};Bulk;C{i % 50}" for i in range(n)
    ]
    lines += ["nonsense;x;y;;"] * 3
    content = ("\n".join(lines) + "\n").encode()
    started = time.perf_counter()
    result = _import(client, content)
    elapsed = time.perf_counter() - started
    print(f"imported {n} rows on {settings.effective_database_url.split(':')[0]} in {elapsed:.2f}s")
    assert (result["created"], result["updated"]) == (n, 0)
    assert [r["row"] for r in result["rejected"]] == [n + 2, n + 3, n + 4]
    assert result["rejected_total"] == 3
    assert row_counts(settings, *TABLES) == {
        "contacts": n,
        "contact_categories": n,
        "categories": 1,
    }
    again = _import(client, content)
    assert (again["created"], again["updated"]) == (0, n)
    assert row_counts(settings, "contacts")["contacts"] == n


def test_fifty_thousand_bad_rows_answer_the_first_thousand_and_the_count(
    client: TestClient, settings: Settings
) -> None:
    n = 50_000
    long_cell = "nophone" * 20  # quoted back cut short
    lines = ["phone,first_name", *(f"{long_cell},x" for _ in range(n)), "0612345678,Camille"]
    response = client.post(
        "/api/contacts/import",
        files={"file": ("c.csv", ("\n".join(lines) + "\n").encode(), "text/csv")},
    )
    assert response.status_code == 200, response.text[:500]
    assert len(response.content) < 200_000  # 1,000 rows of short messages
    body = response.json()
    assert (body["created"], body["updated"], body["rejected_total"]) == (1, 0, n)
    assert [r["row"] for r in body["rejected"]] == list(range(2, MAX_REJECTED_LISTED + 2))
    assert body["rejected"][0]["error"] == (
        f"phone: not a phone number: {long_cell[:40]!r}... ({len(long_cell):,} characters)"
    )
    assert set(_contacts(client)) == {"+33612345678"}


def test_a_repeated_phone_is_rejected_naming_its_first_row_even_in_a_later_batch(
    settings: Settings,
) -> None:
    content = (
        "phone,first_name,categories\n"
        "0612345678,Camille,VIP\n"
        "0698765432,Bob,\n"
        "0611223344,Chloé,\n"
        "+33 6 12 34 56 78,Other,Paris\n"  # batch 2 repeats batch 1's first row
        "0611223344,Again,\n"
        "0781234567,Dan,\n"
    ).encode()
    result = import_contacts(settings, io.BytesIO(content), batch_size=2)
    assert (result.created, result.updated, result.rejected_total) == (4, 0, 2)
    assert [(r.row, r.error) for r in result.rejected] == [
        (5, "duplicate of row 2"),
        (6, "duplicate of row 4"),
    ]
    with api_client(settings) as client:
        contacts = _contacts(client)
        assert contacts["+33612345678"]["first_name"] == "Camille"
        assert contacts["+33611223344"]["first_name"] == "Chloé"
        assert set(_category_ids(client)) == {"VIP"}  # the rejected row's Paris is not created
    assert row_counts(settings, *TABLES) == {
        "contacts": 4,
        "contact_categories": 1,
        "categories": 1,
    }


def test_a_bad_byte_after_several_batches_is_422_and_writes_nothing(settings: Settings) -> None:
    good = "".join(f"+3361234{i:04d},N{i}\n" for i in range(10))
    content = f"phone,first_name\n{good}".encode() + "Müller,x\n".encode("latin-1")
    with pytest.raises(Invalid) as caught:
        import_contacts(settings, io.BytesIO(content), batch_size=2)
    detail = caught.value.detail[0]
    assert detail["field"] == "file"
    assert f"invalid byte at position {content.index(b'M') + 1}" in detail["msg"]
    assert row_counts(settings, *TABLES) == dict.fromkeys(TABLES, 0)


def test_an_erased_opted_out_contact_stays_opted_out_when_its_number_comes_back(
    client: TestClient, settings: Settings
) -> None:
    """Erasing a contact must not erase its "stop": the next import of a file that still holds
    the number, or the API, makes it again opted out; its own opt-in lifts that for good."""
    _import(client, b"phone,first_name\n+33612345678,Ana\n+33698765432,Bob\n")
    ana = _contacts(client)["+33612345678"]
    bob = _contacts(client)["+33698765432"]
    assert client.patch(f"/api/contacts/{ana['id']}", json={"opted_out": True}).status_code == 200
    for contact in (ana, bob):
        assert client.delete(f"/api/contacts/{contact['id']}").status_code == 204
    assert row_counts(settings, "suppressed_phones") == {"suppressed_phones": 1}  # Ana only

    result = _import(client, b"phone,first_name\n+33612345678,Ana\n+33698765432,Bob\n")
    assert result["created"] == 2
    again = _contacts(client)
    assert again["+33612345678"]["opted_out"] is True
    assert again["+33698765432"]["opted_out"] is False
    detail = client.get(f"/api/contacts/{again['+33612345678']['id']}").json()
    assert [h["source"] for h in detail["opt_history"]] == ["suppressed"]

    # Through the API too, after a second erasure.
    assert client.delete(f"/api/contacts/{again['+33612345678']['id']}").status_code == 204
    made = client.post("/api/contacts", json={"phone": "+33612345678"})
    assert made.status_code == 201, made.text
    assert made.json()["opted_out"] is True

    # Opted back in by a person: the number is no longer suppressed.
    url = f"/api/contacts/{made.json()['id']}"
    assert client.patch(url, json={"opted_out": False}).json()["opted_out"] is False
    assert row_counts(settings, "suppressed_phones") == {"suppressed_phones": 0}
    assert client.delete(url).status_code == 204
    made = client.post("/api/contacts", json={"phone": "+33612345678"})
    assert made.json()["opted_out"] is False
