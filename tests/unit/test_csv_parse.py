"""Reading a contacts CSV file, before any database is involved."""

from __future__ import annotations

import pytest

from relance.contacts.csv_import import detect_delimiter, parse_csv
from relance.errors import Invalid


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


def test_a_phone_seen_again_updates_the_earlier_row() -> None:
    content = (
        b"phone,first_name,last_name,categories,plan,city\n"
        b"0612345678,Camille,Martin,VIP,gold,Lyon\n"
        b"+33612345678,,Durand,vip;Paris,platinum,\n"
    )
    parsed = parse_csv(content, "FR")
    assert len(parsed.rows) == 1
    row = parsed.rows[0]
    assert (row.line, row.first_name, row.last_name) == (2, "Camille", "Durand")
    assert row.attributes == {"plan": "platinum", "city": "Lyon"}
    assert row.categories == ["VIP", "Paris"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xff\xfep\x00h\x00", "not UTF-8"),
        (b"phone\x00,x\n", "NUL"),
        (b"name,city\nx,y\n", "no 'phone' column"),
        (b"phone,first_name,First Name\n", "appears twice"),
        (("phone," + "x" * 101 + "\n").encode(), "longer than 100"),
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
