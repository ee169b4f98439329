"""CSV exports that spreadsheets open right and cannot be turned against their reader. Pure.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets (OWASP "CSV injection"): a contact named
``=HYPERLINK(...)`` would run in the marketing team's spreadsheet. Such a cell is prefixed with
``'``, which every one of them shows as text. The file starts with a UTF-8 byte order mark so
that Excel reads accents and emoji as UTF-8 rather than the machine's code page.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_FIRST = frozenset(FORMULA_STARTS)


def safe_cell(value: Any) -> str:
    """``value`` as a CSV cell: None is empty, a datetime ISO 8601, a formula-like text quoted."""
    # The export calls this for every cell of a million rows: the common cases first.
    kind = type(value)
    if value is None:
        return ""
    if kind is int and value >= 0:  # "-1" would start a formula: the text path quotes it
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is datetime:
        return value.isoformat()  # type: ignore[no-any-return]
    text = value if kind is str else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text[:1] in FORMULA_FIRST:
        return "'" + text
    return text


def lines(
    header: Sequence[str], batches: Iterable[Sequence[Sequence[Any]]], bom: bool = True
) -> Iterator[str]:
    """The CSV text, one chunk per batch of rows (the header, after the BOM, first)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    yield (BOM if bom else "") + buffer.getvalue()
    for batch in batches:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([safe_cell(v) for v in row] for row in batch)
        if chunk := buffer.getvalue():
            yield chunk
