"""CSV import of contacts: check the whole file, then read it again and upsert it in batches.

Columns: ``phone`` (required), ``first_name``, ``last_name``, ``categories`` (names separated
by ``;``; unknown ones are created, matched ignoring case); header names ignore case, spaces
and hyphens (``First Name`` is ``first_name``). Every other column becomes an attribute named
as written in the header; empty cells are omitted. UTF-8 with or without BOM, ``,`` or ``;``
(or tab) separated, detected on the header line.

A phone already in the database updates that contact (``updated``): a non-empty name replaces
the stored one, attributes merge, categories are added, an opt-out is kept. A phone that
appears again in the same file is a rejected row, ``duplicate of row M`` (M the first row with
that phone, which is imported). Bad rows are reported with their line number (the header is
line 1) and the others are imported; the answer lists the first MAX_REJECTED_LISTED of them
and counts them all (``rejected_total``). A problem with the file itself (not UTF-8, not text,
no ``phone`` column, not readable as CSV, a row over MAX_RECORD_CHARS characters) is a 422
before anything is written.

Memory stays bounded whatever the file: it is streamed twice (a check, then the import), one
record at a time; good rows go to the database a batch at a time, and the phones already seen
to a scratch file on disk (seen_phones). Error messages quote at most QUOTE_MAX characters.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from sqlalchemy.orm import Session, sessionmaker

from relance.config import Settings
from relance.contacts import repository as repo
from relance.contacts.consent import opt_out_suppressed
from relance.contacts.domain import InvalidPhone, normalize_phone, quoted
from relance.contacts.schemas import (
    ATTRIBUTE_VALUE_MAX,
    MAX_REJECTED_LISTED,
    NAME_MAX,
    ImportResult,
    RejectedRow,
)
from relance.contacts.seen_phones import SeenPhones
from relance.contacts.service import field_error
from relance.db import session_factory
from relance.errors import Invalid
from relance.models import utcnow

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
BATCH_SIZE = 5_000
# A batch of heavy rows (long cells, thousands of columns or categories) is cut sooner: this
# bounds the memory it takes, in ImportRow.weight units (about a byte each).
BATCH_MAX_WEIGHT = 8_000_000
OBJECT_WEIGHT = 100  # a cell or a category name: a str object, a dict entry, a link
# One record (a row, with the lines its quoted cells span): what is read into memory at once.
MAX_RECORD_CHARS = 1_000_000
ATTRIBUTE_KEY_MAX = 100
HEADER_NAMES_QUOTED = 10
CATEGORY_NAMES_PER_QUERY = 1_000
RESERVED = ("phone", "first_name", "last_name", "categories")
DELIMITERS = (",", ";", "\t")
_CHUNK_BYTES = 1024 * 1024


@dataclass(slots=True)
class ImportRow:
    line: int
    phone: str
    first_name: str
    last_name: str
    attributes: dict[str, str]
    categories: list[str]
    weight: int = 0  # about the bytes it holds, counted against BATCH_MAX_WEIGHT

    def values(self) -> repo.ImportedContact:
        return repo.ImportedContact(self.phone, self.first_name, self.last_name, self.attributes)


@dataclass(frozen=True, slots=True)
class CsvLayout:
    """What checking the whole file found: its separator and what each column maps to."""

    delimiter: str
    columns: list[str | None]


class RowError(ValueError):
    """Why one row of the file cannot be imported."""


def file_error(msg: str) -> Invalid:
    return field_error("file", msg)


def detect_delimiter(header_line: str) -> str:
    """The separator used most on the header line (outside quotes); ``,`` if none."""
    unquoted = re.sub(r'"[^"]*"', "", header_line)
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


@contextmanager
def _text(stream: BinaryIO) -> Iterator[TextIO]:
    """The file from its start, as text; the stream stays open for the next reading."""
    stream.seek(0)
    # newline="": lines end at \r, \n or \r\n and keep their ending, as csv.reader wants.
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    try:
        yield text
    finally:
        if not stream.closed:  # else there is nothing left to detach from
            text.detach()


class _Lines:
    """The lines of a file for csv.reader, refusing NUL characters and over-long records.

    ``record_chars`` counts the characters read since the caller last reset it (after each
    record): a line is read at most MAX_RECORD_CHARS + 1 characters at a time, so an endless
    line or quoted cell is refused without being held whole.
    """

    def __init__(self, text: TextIO) -> None:
        self._text = text
        self.number = 0
        self.record_chars = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self._text.readline(MAX_RECORD_CHARS + 1)
        if not line:
            raise StopIteration
        self.number += 1
        self.record_chars += len(line)
        if "\x00" in line:
            raise file_error("the file is not a CSV text file (it contains NUL bytes)")
        if self.record_chars > MAX_RECORD_CHARS:
            raise file_error(
                f"line {self.number}: a row longer than {MAX_RECORD_CHARS:,} characters"
            )
        return line


def _header_line(stream: BinaryIO) -> str:
    """The first line with something other than separators, quotes and spaces."""
    with _text(stream) as text:
        lines = _Lines(text)
        for line in lines:
            if line.strip(' \t,;"\r\n'):
                return line
            lines.record_chars = 0
    raise file_error("the file is empty")


def _records(stream: BinaryIO, delimiter: str) -> Generator[tuple[int, list[str]], None, None]:
    """(first line number, cells) of each non-blank record; a quoted cell may span lines."""
    with _text(stream) as text:
        lines = _Lines(text)
        reader = csv.reader(lines, delimiter=delimiter)
        line = 1
        try:
            for record in reader:
                lines.record_chars = 0
                if any(cell.strip() for cell in record):
                    yield line, record
                line = reader.line_num + 1
        except csv.Error as exc:
            raise file_error(f"line {reader.line_num}: not readable as CSV ({exc})") from None


def _invalid_utf8_at(stream: BinaryIO) -> int:
    """The position of the first byte that is not UTF-8 (the end if there is none)."""
    stream.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    position = 0
    while True:
        chunk = stream.read(_CHUNK_BYTES)
        pending = len(decoder.getstate()[0])  # bytes of a character the last chunk cut
        try:
            decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError as exc:
            return position - pending + exc.start
        if not chunk:
            return position
        position += len(chunk)


def _column_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _header(cells: list[str]) -> list[str | None]:
    """The name each column maps to (a reserved name or an attribute); None to ignore."""
    columns: list[str | None] = []
    seen: set[str] = set()  # not ``in columns``: a header can have 100,000 columns
    for cell in cells:
        name = cell.strip()
        key = _column_key(name)
        column = key if key in RESERVED else name
        if not name:
            columns.append(None)
            continue
        if column in seen:
            raise file_error(f"column {quoted(name)} appears twice in the header")
        if len(column) > ATTRIBUTE_KEY_MAX:
            raise file_error(f"column name {quoted(name)} is longer than {ATTRIBUTE_KEY_MAX}")
        columns.append(column)
        seen.add(column)
    if "phone" not in seen:
        found = [quoted(c.strip()) for c in cells[:HEADER_NAMES_QUOTED]]
        if len(cells) > HEADER_NAMES_QUOTED:
            found.append(f"and {len(cells) - HEADER_NAMES_QUOTED:,} more")
        raise file_error(f"no 'phone' column in the header line (found: {', '.join(found)})")
    return columns


def check_file(stream: BinaryIO, max_bytes: int) -> CsvLayout:
    """Read the whole file once: a 422 naming ``file`` if it is not a usable CSV file.

    Over HTTP the upload is already capped (MAX_IMPORT_BYTES, relance.gate); other callers too.
    """
    if stream.seek(0, io.SEEK_END) > max_bytes:
        raise file_error(f"the file is larger than {max_bytes} bytes (MAX_IMPORT_BYTES)")
    try:
        delimiter = detect_delimiter(_header_line(stream))
        with closing(_records(stream, delimiter)) as records:
            first = next(records, None)
            if first is None:  # the header line had only blank cells
                raise file_error("the file is empty")
            columns = _header(first[1])
            for _ in records:  # every record readable, before the first one is imported
                pass
    except UnicodeDecodeError:
        raise file_error(
            f"the file is not UTF-8 text (invalid byte at position {_invalid_utf8_at(stream)}): "
            "export it as 'CSV UTF-8'"
        ) from None
    return CsvLayout(delimiter, columns)


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
    categories: dict[str, str] = {}  # by lower-case name: the first spelling is kept
    for raw in cells.get("categories", "").split(";"):
        name = raw.strip()
        if len(name) > NAME_MAX:
            raise RowError(f"categories: name longer than {NAME_MAX} characters")
        if name:
            categories.setdefault(name.lower(), name)
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
        categories=list(categories.values()),
        weight=sum(map(len, record)) + OBJECT_WEIGHT * (len(record) + len(categories)),
    )


def read_csv(
    stream: BinaryIO, default_region: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> Iterator[ImportRow | RejectedRow]:
    """Check the whole file now (Invalid if it is not usable), then yield each data row in
    file order: the row to import, or a RejectedRow saying why not."""
    layout = check_file(stream, max_bytes)
    return _rows(stream, layout, default_region)


def _rows(
    stream: BinaryIO, layout: CsvLayout, default_region: str
) -> Iterator[ImportRow | RejectedRow]:
    with closing(_records(stream, layout.delimiter)) as records, SeenPhones() as seen:
        next(records)  # the header, checked already
        for line, record in records:
            try:
                row = parse_row(line, layout.columns, record, default_region)
            except RowError as exc:
                yield RejectedRow(row=line, error=str(exc))
                continue
            first = seen.first_line(row.phone, line)
            if first is None:
                yield row
            else:
                yield RejectedRow(row=line, error=f"duplicate of row {first}")


def import_contacts(
    settings: Settings,
    stream: BinaryIO,
    *,
    category_id: int | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportResult:
    """Import a CSV file as the module docstring says, committing one batch at a time."""
    # Sessions of its own rather than the request's: one transaction per batch keeps each
    # lock short (on SQLite the single writer lock would otherwise be held for the whole
    # file, stalling workers and webhooks) and bounds what a failure rolls back. The caller
    # must hold no open write transaction, or on SQLite these would wait on it.
    rows = read_csv(stream, settings.default_region, settings.max_import_bytes)
    factory = session_factory(settings)
    if category_id is not None:
        with factory() as session:
            if repo.get_category(session, category_id) is None:
                raise field_error(
                    "category_id", f"unknown category id: {category_id}", location="query"
                )
    created = updated = rejected_total = 0
    rejected: list[RejectedRow] = []
    batch: list[ImportRow] = []
    batch_weight = 0
    for item in rows:
        if isinstance(item, RejectedRow):
            rejected_total += 1
            if len(rejected) < MAX_REJECTED_LISTED:
                rejected.append(item)
            continue
        batch.append(item)
        batch_weight += item.weight
        if len(batch) >= batch_size or batch_weight >= BATCH_MAX_WEIGHT:
            new, known = _import_batch(factory, batch, category_id)
            created, updated = created + new, updated + known
            batch, batch_weight = [], 0
    new, known = _import_batch(factory, batch, category_id)
    return ImportResult(
        created=created + new,
        updated=updated + known,
        rejected=rejected,
        rejected_total=rejected_total,
    )


def _import_batch(
    factory: sessionmaker[Session], batch: list[ImportRow], category_id: int | None
) -> tuple[int, int]:
    """Upsert rows of distinct phones and link their categories in one transaction:
    (created, updated)."""
    if not batch:
        return 0, 0
    with factory.begin() as session:
        names = list(dict.fromkeys(name for row in batch for name in row.categories))
        category_ids: dict[str, int] = {}
        for part in repo.chunks(names, CATEGORY_NAMES_PER_QUERY):
            found = repo.ensure_categories(session, part)
            category_ids.update((name.lower(), k) for name, k in found.items())
        now = utcnow()
        upserted = repo.upsert_contacts(session, [row.values() for row in batch], now)
        # A number whose erased contact had opted out comes back opted out.
        opt_out_suppressed(session, [(u.contact_id, u.phone) for u in upserted if u.created], now)
        contact_ids = {u.phone: u.contact_id for u in upserted}
        pairs: list[tuple[int, int]] = []
        for row in batch:
            contact_id = contact_ids[row.phone]
            wanted = {category_ids[name.lower()] for name in row.categories}
            if category_id is not None:
                wanted.add(category_id)
            pairs.extend((contact_id, k) for k in sorted(wanted))
        repo.link_contacts(session, pairs)
    created = sum(u.created for u in upserted)
    return created, len(upserted) - created
