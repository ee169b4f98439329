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

from sqlalchemy import ColumnElement, and_, func, or_, select, union_all
from sqlalchemy.orm import Session

from relance.campaigns.domain import RecipientState
from relance.campaigns.paging import Key, Sort
from relance.models import Contact, Recipient

MAX_SEARCH = 200


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


def page_keys(
    session: Session, campaign_id: int, where: RecipientFilter, after: Key | None, limit: int
) -> list[tuple[int, Any]]:
    """The (id, sort value) of the next ``limit`` recipients after ``after``, in order."""
    sort = where.sort
    states = list(where.states) or list(RecipientState)
    branches = []
    for state in states:
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
        return []
    merged = union_all(*branches).subquery() if len(branches) > 1 else branches[0].subquery()
    rows = session.execute(
        select(merged.c.id, merged.c.at)
        .order_by(*_order(sort, merged.c.at, merged.c.id))
        .limit(limit)
    ).all()
    return [(int(r.id), r.at) for r in rows]


def rows_of(session: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
    """The recipients ``ids`` as the API shows them, in the order of ``ids``."""
    if not ids:
        return []
    found = session.execute(
        select(Recipient, Contact.phone, Contact.first_name, Contact.last_name)
        # Outer: a deleted contact's recipient stays, anonymised (phone and names null).
        .outerjoin(Contact, Contact.id == Recipient.contact_id)
        .where(Recipient.id.in_(list(ids)))
    ).all()
    by_id = {}
    for recipient, phone, first, last in found:
        data = {c.key: getattr(recipient, c.key) for c in Recipient.__table__.columns}
        data.update(
            phone=phone,
            first_name=first,
            last_name=last,
            error_code=recipient.last_error_code,
            error=recipient.last_error,
        )
        by_id[recipient.id] = data
    return [by_id[i] for i in ids if i in by_id]


def page(
    session: Session, campaign_id: int, where: RecipientFilter, after: Key | None, limit: int
) -> tuple[list[dict[str, Any]], Key | None]:
    """One page, and the key the next one starts after (None: this was the last)."""
    keys = page_keys(session, campaign_id, where, after, limit + 1)
    more = len(keys) > limit
    keys = keys[:limit]
    rows = rows_of(session, [i for i, _ in keys])
    if not more or not keys:
        return rows, None
    last_id, last_at = keys[-1]
    if where.sort.column == "id":
        return rows, Key(None, last_id)
    # The sort value as the ORM reads it (aware UTC), not as the union returned it.
    at = next((r[where.sort.column] for r in rows if r["id"] == last_id), last_at)
    return rows, Key(at, last_id)


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
