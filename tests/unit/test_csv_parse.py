"""Reading a contacts CSV file, before any database is involved."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relance.contacts import csv_import
from relance.contacts.csv_import import ImportRow, detect_delimiter, read_csv
from relance.contacts.schemas import RejectedRow
from relance.errors import Invalid


@dataclass
class Parsed:
    rows: list[ImportRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


def parse_csv(content: bytes, default_region: str = "FR") -> Parsed:
    parsed = Parsed()
    for item in read_csv(io.BytesIO(content), default_region):
        if isinstance(item, RejectedRow):
            parsed.rejected.append(item)
        else:
            parsed.rows.append(item)
    return parsed


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("phone,first_name,last_name", ","),
        ("phone;first_name;last_name", ";"),
        ("phone\tfirst_name", "\t"),
        ('"phone;mobile",first_name,"a;b"', ","),
        ("phone", ","),
    ],
)
def test_detect_delimiter(line: str, expected: str) -> None:
    assert detect_delimiter(line) == expected


def test_rows_keep_their_line_numbers_and_reasons() -> None:
    content = (
        b"\n"
        b"phone;First Name;categories;city\n"
        b"0612345678;Camille;VIP; Lyon \n"
        b"\n"
        b"nope;Eve;;\n"
        b";;;\n"
        b"0698765432;Bob;vip;\n"
    )
    parsed = parse_csv(content, "FR")
    assert [(r.line, r.phone, r.first_name) for r in parsed.rows] == [
        (3, "+33612345678", "Camille"),
        (7, "+33698765432", "Bob"),
    ]
    assert parsed.rows[0].attributes == {"city": "Lyon"}
    assert parsed.rows[1].attributes == {}
    assert [(r.row, r.error) for r in parsed.rejected] == [(5, "phone: not a phone number: 'nope'")]


def test_a_phone_seen_again_is_rejected_as_a_duplicate_of_its_first_row() -> None:
    content = (
        b"phone,first_name,last_name,categories,plan,city\n"
        b"0612345678,Camille,Martin,VIP,gold,Lyon\n"
        b"+33612345678,,Durand,vip;Paris,platinum,\n"
        b"0698765432,Bob,,,,\n"
        b"06.12.34.56.78,Eve,,,,\n"
    )
    parsed = parse_csv(content, "FR")
    assert [(r.line, r.phone) for r in parsed.rows] == [(2, "+33612345678"), (4, "+33698765432")]
    camille = parsed.rows[0]
    assert (camille.first_name, camille.last_name) == ("Camille", "Martin")  # nothing merged
    assert camille.attributes == {"plan": "gold", "city": "Lyon"}
    assert camille.categories == ["VIP"]
    assert [(r.row, r.error) for r in parsed.rejected] == [
        (3, "duplicate of row 2"),
        (5, "duplicate of row 2"),
    ]


def test_a_phone_whose_first_row_was_rejected_is_not_a_duplicate() -> None:
    content = ("phone,first_name\n0612345678," + "x" * 201 + "\n06 12 34 56 78,Ok\n").encode()
    parsed = parse_csv(content, "FR")
    assert [(r.line, r.first_name) for r in parsed.rows] == [(3, "Ok")]
    assert [r.row for r in parsed.rejected] == [2]


PHONES = {  # spellings of three numbers, and cells that are not phone numbers
    "0612345678": "+33612345678",
    "+33 6 12 34 56 78": "+33612345678",
    "0698765432": "+33698765432",
    "0033698765432": "+33698765432",
    "+1 650 253 0000": "+16502530000",
    "12345": None,
    "nope": None,
}


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from(sorted(PHONES)), max_size=30))
def test_each_phone_is_imported_once_from_its_first_good_row(cells: list[str]) -> None:
    content = ("phone\n" + "".join(f"{cell}\n" for cell in cells)).encode()
    items = list(read_csv(io.BytesIO(content), "FR"))
    assert [getattr(i, "line", getattr(i, "row", None)) for i in items] == list(
        range(2, len(cells) + 2)
    )
    first_line: dict[str, int] = {}
    for line, (cell, item) in enumerate(zip(cells, items, strict=True), start=2):
        phone = PHONES[cell]
        if phone is None:
            assert isinstance(item, RejectedRow)
            assert item.error.startswith("phone: ")
        elif phone in first_line:
            assert item == RejectedRow(row=line, error=f"duplicate of row {first_line[phone]}")
        else:
            assert isinstance(item, ImportRow)
            assert item.phone == phone
            first_line[phone] = line


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfep\x00h\x00", "not UTF-8"),
        (b"phone\x00,x\n", "NUL"),
        (b"name,city\nx,y\n", "no 'phone' column"),
        (b"phone,first_name,First Name\n", "appears twice"),
        (("phone," + "x" * 101 + "\n").encode(), "longer than 100"),
        (b"phone\n0612345678\n" + b"x" * 1_000_001 + b"\n", "longer than 1,000,000 characters"),
        # Quoted cells under the CSV field limit, over many lines: one record all the same.
        (b"phone\n" + (b'"' + b"x\n" * 60_000 + b'",') * 10, "longer than 1,000,000 characters"),
        (b'phone,name\n0612345678,"' + b"x\n" * 70_000, "not readable as CSV"),
        (b"phone\n0612345678\nok\x00\n", "NUL"),
    ],
)
def test_file_level_problems_are_invalid(content: bytes, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_csv(content, "FR")
    assert caught.value.detail[0]["field"] == "file"
    assert message in caught.value.detail[0]["msg"]


def test_a_bom_is_not_part_of_the_first_column() -> None:
    parsed = parse_csv("\ufeffphone\n0612345678\n".encode(), "FR")
    assert [r.phone for r in parsed.rows] == ["+33612345678"]


def test_the_first_byte_that_is_not_utf8_is_located_across_read_chunks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(csv_import, "_CHUNK_BYTES", 4)
    content = "phone\n0612345678\ncafé\n".encode() + b"\xff\n"  # é's 2 bytes cross a chunk
    with pytest.raises(Invalid) as caught:
        parse_csv(content, "FR")
    position = content.index(b"\xff")
    assert f"invalid byte at position {position}" in caught.value.detail[0]["msg"]


def test_error_messages_quote_a_bounded_part_of_the_input() -> None:
    header = ",".join(f"column {i} " + "y" * 80 for i in range(1_000))
    content = (header + "\n" + "z" * 100_000 + "\n").encode()
    with pytest.raises(Invalid) as caught:
        parse_csv(content, "FR")
    message = caught.value.detail[0]["msg"]
    assert "no 'phone' column" in message and "and 990 more" in message
    assert len(message) < 1_000
    parsed = parse_csv(("phone,name\n" + "6" * 100_000 + ",x\n").encode(), "FR")
    assert len(parsed.rejected[0].error) < 200
