"""Keyset pages (campaigns/paging.py), answers' text (answer_rule.reply_text), CSV cells."""

from __future__ import annotations

import contextlib
import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relance import csv_export
from relance.campaigns import paging
from relance.campaigns.answer_rule import REPLY_TEXT_MAX, reply_text
from relance.campaigns.paging import BadCursor, Key, Sort

BASE = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
sorts = st.builds(Sort, st.sampled_from(paging.SORTS), st.booleans())
# Few distinct times, so that ties (equal timestamps) are common.
stamps = st.one_of(st.none(), st.integers(0, 5).map(lambda s: BASE + timedelta(seconds=s)))


def order_key(sort: Sort, at: datetime | None, ident: int) -> tuple[object, ...]:
    """The order the listing promises, written the obvious way."""
    sign = -1 if sort.descending else 1
    if sort.column == "id":
        return (sign * ident,)
    seconds = (at - BASE).total_seconds() if at else 0.0
    return (at is None, sign * seconds, sign * ident)


@settings(max_examples=200)
@given(sorts, st.lists(stamps, min_size=1, max_size=30))
def test_after_a_key_come_exactly_the_rows_that_follow_it(
    sort: Sort, times: list[datetime | None]
) -> None:
    rows = [(None if sort.column == "id" else at, i + 1) for i, at in enumerate(times)]
    rows.sort(key=lambda r: order_key(sort, *r))
    for k, (at, ident) in enumerate(rows):
        key = paging.decode(sort, paging.encode(sort, Key(at, ident)))
        assert key == Key(at, ident)
        following = [r for r in rows if paging.comes_after(sort, key, *r)]
        assert following == rows[k + 1 :]


@given(sorts, stamps, st.integers(1, 2**62))
def test_a_cursor_round_trips_and_is_url_safe(sort: Sort, at: datetime | None, ident: int) -> None:
    at = None if sort.column == "id" else at
    cursor = paging.encode(sort, Key(at, ident))
    assert len(cursor) <= paging.MAX_CURSOR
    assert all(c.isalnum() or c in "-_" for c in cursor)
    assert paging.decode(sort, cursor) == Key(at, ident)


@given(st.text(max_size=300))
def test_any_text_is_a_cursor_or_refused_never_a_crash(text: str) -> None:
    with contextlib.suppress(BadCursor):
        paging.decode(Sort("replied_at"), text)


def test_a_cursor_of_another_sort_is_refused_with_why() -> None:
    cursor = paging.encode(Sort("replied_at"), Key(BASE, 3))
    with pytest.raises(BadCursor, match="another sort"):
        paging.decode(Sort("replied_at", descending=True), cursor)
    with pytest.raises(BadCursor):
        paging.decode(Sort(), "not-a-cursor")
    assert str(Sort.parse("-failed_at")) == "-failed_at"
    with pytest.raises(ValueError, match="must be one of"):
        Sort.parse("phone")


@pytest.mark.parametrize(
    ("kind", "subtype", "text", "expected"),
    [
        ("text", "", "  Oui,\n merci ", "Oui, merci"),
        ("button", "", "Je suis intéressé", "Je suis intéressé"),
        ("interactive", "button_reply", "Plus tard", "Plus tard"),
        ("reaction", "", "👍", "👍"),
        ("image", "", "", "image"),
        ("image", "", "ma carte", "image: ma carte"),
        ("audio", "voice", "", "voice"),
        ("location", "", "Lyon", "location: Lyon"),
        ("contacts", "", "", "contact card"),
        ("unsupported", "poll_update", "", "message"),
    ],
)
def test_reply_text_says_what_the_answer_said_or_what_it_was(
    kind: str, subtype: str, text: str, expected: str
) -> None:
    assert reply_text(kind, subtype, text) == expected


@given(st.sampled_from(["text", "image", "audio", "other"]), st.text())
def test_reply_text_is_bounded_and_never_empty(kind: str, text: str) -> None:
    said = reply_text(kind, "", text)
    assert 0 < len(said) <= REPLY_TEXT_MAX


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_formula_like_cell_is_quoted(start: str) -> None:
    assert csv_export.safe_cell(start + "HYPERLINK(1)") == "'" + start + "HYPERLINK(1)"


@given(st.lists(st.lists(st.one_of(st.none(), st.text(), st.integers()), min_size=3, max_size=3)))
def test_csv_reads_back_and_no_cell_starts_a_formula(rows: list[list[object]]) -> None:
    text = "".join(csv_export.lines(["a", "b", "c"], [rows[:2], rows[2:]]))
    assert text.startswith(csv_export.BOM + "a,b,c\r\n")
    read = list(csv.reader(io.StringIO(text[1:], newline="")))
    assert read[0] == ["a", "b", "c"]
    assert len(read) == len(rows) + 1
    for got, row in zip(read[1:], rows, strict=True):
        assert got == [csv_export.safe_cell(v) for v in row]
        assert not any(cell.startswith(csv_export.FORMULA_STARTS) for cell in got)
