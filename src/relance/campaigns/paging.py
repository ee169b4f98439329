"""Keyset pages of a campaign's recipients: the sort orders and the opaque cursor. Pure.

A page ends where the next one starts: the cursor holds the last row's sort key (its
timestamp, or none, and its id), so the next page is "rows after this key" whatever was
inserted or moved meanwhile, and reading page 10,000 costs what page 1 costs (an offset
would read and drop every row before it). Rows without the timestamp come last in either
direction, then by id.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

# The recipient's timestamps one may sort by (besides its id, the default).
TIMESTAMPS = (
    "queued_at",
    "awaiting_reply_at",
    "replied_at",
    "message_2_sent_at",
    "no_interaction_at",
    "failed_at",
    "cancelled_at",
    "opted_out_at",
    "done_at",
    "window_closes_at",
)
SORTS = ("id", *TIMESTAMPS)
MAX_CURSOR = 200  # characters: a real cursor is about 80


class BadCursor(ValueError):
    """A cursor this server did not make, or made for another sort."""


@dataclass(frozen=True)
class Sort:
    """``column`` ascending, or descending with ``descending``."""

    column: str = "id"
    descending: bool = False

    @classmethod
    def parse(cls, text: str) -> Sort:
        """``replied_at`` or ``-replied_at`` (newest first); ValueError names the choices."""
        descending = text.startswith("-")
        column = text.removeprefix("-")
        if column not in SORTS:
            raise ValueError(f"must be one of {', '.join(SORTS)}, optionally prefixed with -")
        return cls(column, descending)

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.column


@dataclass(frozen=True)
class Key:
    """Where a page ended: the last row's timestamp (None: it had none) and id."""

    at: datetime | None
    id: int


def encode(sort: Sort, key: Key) -> str:
    """The opaque cursor of ``key`` under ``sort`` (URL-safe, no padding)."""
    at = key.at.astimezone(UTC).isoformat() if key.at is not None else None
    raw = json.dumps([str(sort), at, key.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(sort: Sort, cursor: str) -> Key:
    """The key ``cursor`` holds; BadCursor if it is not one of ours for this ``sort``."""
    if not cursor or len(cursor) > MAX_CURSOR:
        raise BadCursor("not a cursor of this listing")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        made_for, at, ident = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadCursor("not a cursor of this listing") from exc
    if made_for != str(sort):
        raise BadCursor(f"made for another sort ({made_for!r}): start again without it")
    if not isinstance(ident, int) or isinstance(ident, bool) or not 0 < ident < 2**63:
        raise BadCursor("not a cursor of this listing")
    if at is None:
        return Key(None, ident)
    if sort.column == "id" or not isinstance(at, str):
        raise BadCursor("not a cursor of this listing")
    try:
        when = datetime.fromisoformat(at)
    except ValueError as exc:
        raise BadCursor("not a cursor of this listing") from exc
    if when.tzinfo is None:
        raise BadCursor("not a cursor of this listing")
    return Key(when, ident)


def comes_after(sort: Sort, key: Key, at: datetime | None, ident: int) -> bool:
    """Does the row (``at``, ``ident``) come after ``key`` in ``sort``'s order? The rule the
    SQL of ``recipient_list`` follows, stated once so that it can be tested without one."""
    ahead = (lambda a, b: a < b) if sort.descending else (lambda a, b: a > b)
    if sort.column == "id":
        return bool(ahead(ident, key.id))
    if key.at is None:  # in the rows without the timestamp, the last ones
        return at is None and bool(ahead(ident, key.id))
    if at is None:
        return True
    return bool(ahead(at, key.at)) or (at == key.at and bool(ahead(ident, key.id)))
