"""A campaign's recipients, filtered and in keyset pages: the API's table, the CSV export.

Each state is read on its own, in the sort's order, and the branches are merged: with the
index ``(campaign_id, state, id)`` every branch of the default order (by id) is an ordered
index scan that stops after one page, so a page costs the same at any depth and any size
(``relance bench`` measures it at 1,000,000 recipients). A sort by a timestamp has no index of
its own (five more on the hottest table would slow every transition): each branch sorts its
state's matching rows, which is cheap for the small states (failed, replied) and grows with
the large ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Subquery, and_, func, or_, select, union_all
from sqlalchemy.orm import Session

from relance.campaigns.domain import RecipientState
from relance.campaigns.paging import Key, Sort
from relance.models import Contact, Recipient

MAX_SEARCH = 200
CODED_STATES = frozenset({RecipientState.FAILED, RecipientState.OPTED_OUT})
ROW_COLUMNS = (
    *Recipient.__table__.columns,
    Contact.phone,
    Contact.first_name,
    Contact.last_name,
)


@dataclass(frozen=True)
class RecipientFilter:
    """Which recipients: states (none: all), provider failure codes, a text to find."""

    states: Sequence[RecipientState] = ()
    error_codes: Sequence[str] = ()
    search: str | None = None
    sort: Sort = field(default_factory=Sort)


def _sort_column(sort: Sort) -> Any:
    return getattr(Recipient, sort.column)


def _order(sort: Sort, column: Any, ident: Any) -> list[Any]:
    if sort.column == "id":
        return [ident.desc() if sort.descending else ident.asc()]
    # Rows without the timestamp last, in either direction; then the timestamp; then the id.
    direction = (lambda c: c.desc()) if sort.descending else (lambda c: c.asc())
    return [column.is_(None).asc(), direction(column), direction(ident)]


def _after(sort: Sort, key: Key) -> ColumnElement[bool]:
    """The rows after ``key`` in ``sort``'s order (``paging.comes_after``, as SQL)."""
    ident = Recipient.id

    def ahead(a: Any, b: Any) -> ColumnElement[bool]:
        return a < b if sort.descending else a > b  # type: ignore[no-any-return]

    if sort.column == "id":
        return ahead(ident, key.id)
    column = _sort_column(sort)
    if key.at is None:
        return and_(column.is_(None), ahead(ident, key.id))
    return or_(
        column.is_(None),
        ahead(column, key.at),
        and_(column == key.at, ahead(ident, key.id)),
    )


def _search(text: str) -> ColumnElement[bool]:
    """Case-insensitive substring of the phone, the names, the answer or the failure."""
    needle = text.lower()
    columns = (
        Contact.phone,
        Contact.first_name,
        Contact.last_name,
        Recipient.reply_text,
        Recipient.last_error,
        Recipient.last_error_code,
    )
    return or_(*(func.lower(c).contains(needle, autoescape=True) for c in columns))


def _states(where: RecipientFilter) -> list[RecipientState]:
    states = list(where.states) or list(RecipientState)
    if where.error_codes:
        # Only these keep a failure code (a retry clears it): the other states' rows would be
        # read through for nothing (a million no_interaction rows to find no code).
        states = [s for s in states if s in CODED_STATES]
    return states


def _keys(
    campaign_id: int, where: RecipientFilter, after: Key | None, limit: int
) -> Subquery | None:
    """The (id, sort value) of the next ``limit`` recipients after ``after``, in order: one
    branch per state, each an ordered scan that stops at ``limit``, merged."""
    sort = where.sort
    branches = []
    for state in _states(where):
        column = _sort_column(sort)
        query = select(Recipient.id.label("id"), column.label("at")).where(
            Recipient.campaign_id == campaign_id, Recipient.state == state.value
        )
        if where.error_codes:
            query = query.where(Recipient.last_error_code.in_(list(where.error_codes)))
        if where.search:
            query = query.outerjoin(Contact, Contact.id == Recipient.contact_id).where(
                _search(where.search)
            )
        if after is not None:
            query = query.where(_after(sort, after))
        query = query.order_by(*_order(sort, column, Recipient.id)).limit(limit)
        # Wrapped: SQLite takes no ORDER BY / LIMIT in a bare member of a UNION.
        branch = query.subquery()
        branches.append(select(branch.c.id, branch.c.at))
    if not branches:
        return None
    merged = union_all(*branches).subquery() if len(branches) > 1 else branches[0].subquery()
    return (
        select(merged.c.id, merged.c.at)
        .order_by(*_order(sort, merged.c.at, merged.c.id))
        .limit(limit)
        .subquery()
    )


def page(
    session: Session, campaign_id: int, where: RecipientFilter, after: Key | None, limit: int
) -> tuple[list[dict[str, Any]], Key | None]:
    """One page as the API shows it, and the key the next one starts after (None: the last).

    One statement: the page's keys, then their rows and contacts joined to them (plain
    columns, no ORM objects: the export reads a million rows through here)."""
    keys = _keys(campaign_id, where, after, limit + 1)
    if keys is None:
        return [], None
    # Core, not the ORM's result machinery: the same rows, half the Python per row.
    rows = [
        dict(row)
        for row in session.connection()
        .execute(
            select(*ROW_COLUMNS)
            .select_from(keys)
            .join(Recipient, Recipient.id == keys.c.id)
            # Outer: a deleted contact's recipient stays, anonymised (phone and names null).
            .outerjoin(Contact, Contact.id == Recipient.contact_id)
            .order_by(*_order(where.sort, keys.c.at, keys.c.id))
        )
        .mappings()
    ]
    more = len(rows) > limit
    rows = rows[:limit]
    for row in rows:
        row["error_code"] = row["last_error_code"]
        row["error"] = row["last_error"]
    if not more or not rows:
        return rows, None
    last = rows[-1]
    at = None if where.sort.column == "id" else last[where.sort.column]
    return rows, Key(at, last["id"])


def every_row(
    session: Session, campaign_id: int, where: RecipientFilter, batch: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every matching recipient, a page at a time (the export: constant memory)."""
    after: Key | None = None
    while True:
        rows, after = page(session, campaign_id, where, after, batch)
        yield from rows
        if after is None:
            return
