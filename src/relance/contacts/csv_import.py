"""CSV import of contacts: read and check the whole file, then upsert it in batches.

Columns: ``phone`` (required), ``first_name``, ``last_name``, ``categories`` (names separated
by ``;``; unknown ones are created, matched ignoring case); header names ignore case, spaces
and hyphens (``First Name`` is ``first_name``). Every other column becomes an attribute named
as written in the header; empty cells are omitted. UTF-8 with or without BOM, ``,`` or ``;``
(or tab) separated, detected on the header line.

A phone already in the database updates that contact (``updated``): a non-empty name replaces
the stored one, attributes merge, categories are added, an opt-out is kept. A phone seen
twice in the same file is the same rule applied in file order: the later row updates the
earlier one, and the phone counts once. Bad rows are reported with their line number (the
header is line 1) and the others are imported; a problem with the file itself (not UTF-8,
not text, no ``phone`` column) is a 422 before anything is written.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from relance.config import Settings
from relance.contacts import repository as repo
from relance.contacts.domain import InvalidPhone, normalize_phone
from relance.contacts.schemas import ATTRIBUTE_VALUE_MAX, ImportResult, RejectedRow
from relance.contacts.service import field_error
from relance.db import session_factory
from relance.errors import Invalid
from relance.models import utcnow

BATCH_SIZE = 5_000
MAX_FILE_BYTES = 64 * 1024 * 1024
NAME_MAX = 200
ATTRIBUTE_KEY_MAX = 100
RESERVED = ("phone", "first_name", "last_name", "categories")
DELIMITERS = (",", ";", "\t")


@dataclass(slots=True)
class ImportRow:
    line: int
    phone: str
    first_name: str
    last_name: str
    attributes: dict[str, str]
    categories: list[str]

    def merge(self, later: ImportRow) -> None:
        """Apply a later row of the same phone, as the database upsert would."""
        self.first_name = later.first_name or self.first_name
        self.last_name = later.last_name or self.last_name
        self.attributes.update(later.attributes)
        known = {c.lower() for c in self.categories}
        self.categories.extend(c for c in later.categories if c.lower() not in known)

    def values(self) -> repo.ImportedContact:
        return repo.ImportedContact(self.phone, self.first_name, self.last_name, self.attributes)


@dataclass(slots=True)
class ParsedCsv:
    rows: list[ImportRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


class RowError(ValueError):
    """Why one row of the file cannot be imported."""


def file_error(msg: str) -> Invalid:
    return field_error("file", msg)


def decode(content: bytes) -> str:
    """The file's text, or a 422 saying why it is not a UTF-8 CSV file."""
    if len(content) > MAX_FILE_BYTES:
        raise file_error(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise file_error(
            f"the file is not UTF-8 text (invalid byte at position {exc.start}): "
            "export it as 'CSV UTF-8'"
        ) from None
    if "\x00" in text:
        raise file_error("the file is not a CSV text file (it contains NUL bytes)")
    if not text.strip():
        raise file_error("the file is empty")
    return text


def detect_delimiter(header_line: str) -> str:
    """The separator used most on the header line (outside quotes); ``,`` if none."""
    unquoted = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _records(text: str, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, cells) of each non-blank record; a quoted cell may span lines."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    line = 1
    try:
        for record in reader:
            if any(cell.strip() for cell in record):
                yield line, record
            line = reader.line_num + 1
    except csv.Error as exc:
        raise file_error(f"line {reader.line_num}: not readable as CSV ({exc})") from None


def _column_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _header(cells: list[str]) -> list[str | None]:
    """The name each column maps to (a reserved name or an attribute); None to ignore."""
    columns: list[str | None] = []
    for cell in cells:
        name = cell.strip()
        key = _column_key(name)
        column = key if key in RESERVED else name
        if not name:
            columns.append(None)
            continue
        if column in columns:
            raise file_error(f"column {name!r} appears twice in the header")
        if len(column) > ATTRIBUTE_KEY_MAX:
            raise file_error(f"column name {name[:40]!r}... is longer than {ATTRIBUTE_KEY_MAX}")
        columns.append(column)
    if "phone" not in columns:
        found = ", ".join(repr(c.strip()) for c in cells)
        raise file_error(f"no 'phone' column in the header line (found: {found})")
    return columns


def _name(value: str, column: str) -> str:
    if len(value) > NAME_MAX:
        raise RowError(f"{column}: longer than {NAME_MAX} characters")
    return value


def parse_row(
    line: int, columns: list[str | None], record: list[str], default_region: str
) -> ImportRow:
    """One data row, or RowError saying what is wrong with it."""
    extra = record[len(columns) :]
    if any(cell.strip() for cell in extra):
        raise RowError(f"{len(record)} fields, but the header has {len(columns)}")
    cells = {c: v.strip() for c, v in zip(columns, record, strict=False) if c is not None}
    try:
        phone = normalize_phone(cells.get("phone", ""), default_region)
    except InvalidPhone as exc:
        raise RowError(f"phone: {exc}") from None
    categories: list[str] = []
    for raw in cells.get("categories", "").split(";"):
        name = raw.strip()
        if len(name) > NAME_MAX:
            raise RowError(f"categories: name longer than {NAME_MAX} characters")
        if name and name.lower() not in (c.lower() for c in categories):
            categories.append(name)
    attributes = {k: v for k, v in cells.items() if k not in RESERVED and v}
    for key, value in attributes.items():
        if len(value) > ATTRIBUTE_VALUE_MAX:
            raise RowError(f"{key}: longer than {ATTRIBUTE_VALUE_MAX} characters")
    return ImportRow(
        line=line,
        phone=phone,
        first_name=_name(cells.get("first_name", ""), "first_name"),
        last_name=_name(cells.get("last_name", ""), "last_name"),
        attributes=attributes,
        categories=categories,
    )


def parse_csv(content: bytes, default_region: str) -> ParsedCsv:
    """Every good row (one per phone, in file order) and every bad row with its reason."""
    text = decode(content)
    header_line = next((line for line in text.splitlines() if line.strip(' \t,;"')), "")
    if not header_line:
        raise file_error("the file is empty")
    records = _records(text, detect_delimiter(header_line))
    first = next(records, None)
    if first is None:  # pragma: no cover - the header line above is a non-blank record
        raise file_error("the file is empty")
    columns = _header(first[1])
    parsed = ParsedCsv()
    by_phone: dict[str, ImportRow] = {}
    for line, record in records:
        try:
            row = parse_row(line, columns, record, default_region)
        except RowError as exc:
            parsed.rejected.append(RejectedRow(row=line, error=str(exc)))
            continue
        earlier = by_phone.get(row.phone)
        if earlier is None:
            by_phone[row.phone] = row
            parsed.rows.append(row)
        else:
            earlier.merge(row)
    return parsed


def import_contacts(
    settings: Settings,
    content: bytes,
    *,
    category_id: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportResult:
    """Import a CSV file as the module docstring says, committing one batch at a time."""
    # Sessions of its own rather than the request's: one transaction per batch keeps each
    # lock short (on SQLite the single writer lock would otherwise be held for the whole
    # file, stalling workers and webhooks) and bounds what a failure rolls back. The caller
    # must hold no open write transaction, or on SQLite these would wait on it.
    parsed = parse_csv(content, settings.default_region)
    factory = session_factory(settings)
    with factory.begin() as session:
        if category_id is not None and repo.get_category(session, category_id) is None:
            raise field_error(
                "category_id", f"unknown category id: {category_id}", location="query"
            )
        names = list(dict.fromkeys(name for row in parsed.rows for name in row.categories))
        category_ids = {k.lower(): v for k, v in repo.ensure_categories(session, names).items()}
    created = updated = 0
    for batch in repo.chunks(parsed.rows, batch_size):
        now = utcnow()
        with factory.begin() as session:
            upserted = repo.upsert_contacts(session, [row.values() for row in batch], now)
            contact_ids = {u.phone: u.contact_id for u in upserted}
            pairs: list[tuple[int, int]] = []
            for row in batch:
                contact_id = contact_ids[row.phone]
                wanted = {category_ids[name.lower()] for name in row.categories}
                if category_id is not None:
                    wanted.add(category_id)
                pairs.extend((contact_id, k) for k in sorted(wanted))
            repo.link_contacts(session, pairs)
        new = sum(u.created for u in upserted)
        created += new
        updated += len(upserted) - new
    return ImportResult(created=created, updated=updated, rejected=parsed.rejected)
