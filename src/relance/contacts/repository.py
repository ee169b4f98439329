"""The SQL of contacts and categories, for PostgreSQL and SQLite alike."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    Select,
    Table,
    Text,
    bindparam,
    case,
    cast,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Subquery

from relance.db import conflict_insert, is_postgresql
from relance.models import (
    Base,
    Category,
    Contact,
    contact_categories,
    utcnow,
)

T = TypeVar("T")
CONTACTS: Table = Base.metadata.tables["contacts"]
LINKS = contact_categories
# Stay under the bind-parameter ceilings (SQLite's default 32,766; PostgreSQL's 65,535).
MAX_BIND_PARAMS = 30_000


def chunks(items: Sequence[T], size: int) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


# Contacts ------------------------------------------------------------------------------


def get_contact(session: Session, contact_id: int) -> Contact | None:
    return session.get(Contact, contact_id)


def phone_owner(session: Session, phone: str) -> int | None:
    """The id of the contact holding ``phone``, if any."""
    return session.scalar(select(Contact.id).where(Contact.phone == phone))


def missing_contact_ids(session: Session, ids: Collection[int]) -> list[int]:
    found: set[int] = set()
    for part in chunks(sorted(set(ids)), MAX_BIND_PARAMS):
        found.update(session.scalars(select(Contact.id).where(Contact.id.in_(part))))
    return sorted(set(ids) - found)


def category_ids_by_contact(session: Session, contact_ids: Collection[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {cid: [] for cid in contact_ids}
    if not out:
        return out
    stmt = (
        select(LINKS.c.contact_id, LINKS.c.category_id)
        .where(LINKS.c.contact_id.in_(sorted(out)))
        .order_by(LINKS.c.contact_id, LINKS.c.category_id)
    )
    for contact_id, category_id in session.execute(stmt):
        out[contact_id].append(category_id)
    return out


def set_contact_categories(
    session: Session, contact_id: int, category_ids: Collection[int]
) -> None:
    """Make the contact's categories exactly ``category_ids``."""
    wanted = set(category_ids)
    session.execute(
        delete(LINKS).where(LINKS.c.contact_id == contact_id, LINKS.c.category_id.not_in(wanted))
    )
    link_contacts(session, [(contact_id, category_id) for category_id in sorted(wanted)])


def link_contacts(session: Session, pairs: Sequence[tuple[int, int]]) -> None:
    """Insert (contact_id, category_id) links; existing ones are left as they are."""
    if not pairs:
        return
    if is_postgresql(session):
        # Two array parameters instead of two per row: see upsert_contacts.
        source = (
            func.unnest(
                bindparam("contact_ids", [c for c, _ in pairs], type_=ARRAY(Integer)),
                bindparam("category_ids", [k for _, k in pairs], type_=ARRAY(Integer)),
            )
            .table_valued("contact_id", "category_id")
            .render_derived("source")
        )
        from_array = postgresql.insert(LINKS).from_select(
            ["contact_id", "category_id"], select(source.c.contact_id, source.c.category_id)
        )
        session.execute(from_array.on_conflict_do_nothing())
        return
    rows = [{"contact_id": c, "category_id": k} for c, k in pairs]
    # executemany: compiled once, sent as multi-row VALUES pages ("insertmanyvalues").
    stmt = sqlite.insert(LINKS).on_conflict_do_nothing()
    session.execute(stmt.execution_options(insertmanyvalues_page_size=MAX_BIND_PARAMS // 2), rows)


def contacts_query(
    *,
    category_id: int | None,
    search: str | None,
    exact_phone: str | None,
    opted_out: bool | None = None,
) -> Select[Contact]:
    stmt = select(Contact)
    if opted_out is not None:
        stmt = stmt.where(
            Contact.opted_out_at.is_not(None) if opted_out else Contact.opted_out_at.is_(None)
        )
    if category_id is not None:
        stmt = stmt.where(
            exists().where(LINKS.c.contact_id == Contact.id, LINKS.c.category_id == category_id)
        )
    if search:
        pattern = f"%{_like_escape(search)}%"
        full_name = Contact.first_name + " " + Contact.last_name
        matches: list[ColumnElement[bool]] = [
            column.ilike(pattern, escape="\\")
            for column in (Contact.first_name, Contact.last_name, Contact.phone, full_name)
        ]
        if exact_phone:
            matches.append(Contact.phone == exact_phone)
        stmt = stmt.where(or_(*matches))
    return stmt


def page(
    session: Session, stmt: Select[Contact], limit: int, offset: int
) -> tuple[list[Contact], int]:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.order_by(Contact.id).limit(limit).offset(offset)))
    return items, total


def audience_counts(
    session: Session, category_ids: Collection[int], contact_ids: Collection[int]
) -> tuple[int, int]:
    """(reachable, opted out): distinct contacts in any of the categories or listed by id."""
    conditions: list[ColumnElement[bool]] = []
    if contact_ids:
        conditions.append(Contact.id.in_(sorted(set(contact_ids))))
    if category_ids:
        conditions.append(
            exists().where(
                LINKS.c.contact_id == Contact.id, LINKS.c.category_id.in_(sorted(set(category_ids)))
            )
        )
    if not conditions:
        return 0, 0
    opted_out = func.count(Contact.opted_out_at)
    row = session.execute(select(func.count() - opted_out, opted_out).where(or_(*conditions))).one()
    return int(row[0]), int(row[1])


# Categories ----------------------------------------------------------------------------


def get_category(session: Session, category_id: int) -> Category | None:
    return session.get(Category, category_id)


def category_named(session: Session, name: str) -> Category | None:
    """The category called ``name``, ignoring case (an exact match first)."""
    stmt = (
        select(Category)
        .where(func.lower(Category.name) == name.lower())
        .order_by((Category.name == name).desc(), Category.id)
        .limit(1)
    )
    return session.scalar(stmt)


def missing_category_ids(session: Session, ids: Collection[int]) -> list[int]:
    found = set(session.scalars(select(Category.id).where(Category.id.in_(sorted(set(ids))))))
    return sorted(set(ids) - found)


def _count_subquery() -> Subquery:
    return (
        select(LINKS.c.category_id, func.count().label("n"))
        .group_by(LINKS.c.category_id)
        .subquery()
    )


def categories_with_counts(
    session: Session, limit: int, offset: int
) -> tuple[list[tuple[Category, int]], int]:
    counts = _count_subquery()
    stmt = (
        select(Category, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.category_id == Category.id)
        .order_by(Category.id)
        .limit(limit)
        .offset(offset)
    )
    items = [(category, int(n)) for category, n in session.execute(stmt)]
    total = session.scalar(select(func.count()).select_from(Category)) or 0
    return items, total


def contact_count(session: Session, category_id: int) -> int:
    stmt = select(func.count()).select_from(LINKS).where(LINKS.c.category_id == category_id)
    return session.scalar(stmt) or 0


def ensure_categories(session: Session, names: Collection[str]) -> dict[str, int]:
    """Ids of the categories called ``names`` (ignoring case), creating the missing ones."""
    wanted: dict[str, str] = {}
    for name in names:  # the first spelling given is the one created
        wanted.setdefault(name.lower(), name)
    ids: dict[str, int] = {}
    if not wanted:
        return ids
    existing = select(Category.id, Category.name).where(func.lower(Category.name).in_(wanted))
    # Prefer an exact spelling when "VIP" and "vip" both exist.
    for category_id, name in session.execute(existing.order_by(Category.id)):
        if name.lower() not in ids or wanted[name.lower()] == name:
            ids[name.lower()] = category_id
    missing = [name for key, name in wanted.items() if key not in ids]
    if missing:
        rows = [{"name": name, "description": "", "created_at": utcnow()} for name in missing]
        session.execute(conflict_insert(session, Category).values(rows).on_conflict_do_nothing())
        for category_id, name in session.execute(
            select(Category.id, Category.name).where(Category.name.in_(missing))
        ):
            ids[name.lower()] = category_id
    return {name: ids[name.lower()] for name in names}


# CSV import ----------------------------------------------------------------------------


class ImportedContact(NamedTuple):
    phone: str
    first_name: str
    last_name: str
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Upserted:
    contact_id: int
    phone: str
    created: bool


def upsert_contacts(
    session: Session, rows: Sequence[ImportedContact], now: datetime
) -> list[Upserted]:
    """Insert each row, or update the contact holding its phone; rows must not repeat a phone."""
    # On conflict a non-empty name replaces the stored one and attributes merge (the row's
    # keys win); opted_out_at is never touched: re-importing a file must not opt anyone in.
    # A repeated phone would make PostgreSQL refuse to update one row twice in a statement.
    if not rows:
        return []
    if is_postgresql(session):
        return _upsert_postgresql(session, rows, now)
    return _upsert_sqlite(session, rows, now)


def _upsert_postgresql(
    session: Session, rows: Sequence[ImportedContact], now: datetime
) -> list[Upserted]:
    # The rows travel as four array parameters unnested server-side: a multi-row VALUES list
    # would carry six parameters per row, and building and parsing that query text for
    # thousands of rows costs more than PostgreSQL takes to run it.
    source = (
        func.unnest(
            bindparam("phones", [r.phone for r in rows], type_=ARRAY(Text)),
            bindparam("first_names", [r.first_name for r in rows], type_=ARRAY(Text)),
            bindparam("last_names", [r.last_name for r in rows], type_=ARRAY(Text)),
            bindparam("attributes", [json.dumps(r.attributes) for r in rows], type_=ARRAY(Text)),
        )
        .table_valued("phone", "first_name", "last_name", "attributes")
        .render_derived("source")
    )
    stamp = bindparam("now", now, type_=CONTACTS.c.created_at.type)
    values = select(
        source.c.phone,
        source.c.first_name,
        source.c.last_name,
        cast(source.c.attributes, JSONB),
        stamp,
        stamp,
    )
    insert = postgresql.insert(CONTACTS).from_select(
        ["phone", "first_name", "last_name", "attributes", "created_at", "updated_at"], values
    )
    stmt = insert.on_conflict_do_update(
        index_elements=[CONTACTS.c.phone],
        set_=_update_set(
            insert.excluded, CONTACTS.c.attributes.op("||")(insert.excluded.attributes)
        ),
    ).returning(
        CONTACTS.c.id,
        CONTACTS.c.phone,
        # xmax is 0 on a freshly inserted row version and set on an updated one.
        literal_column("xmax = 0", Boolean).label("inserted"),
    )
    return [Upserted(i, p, bool(new)) for i, p, new in session.execute(stmt)]


def _upsert_sqlite(
    session: Session, rows: Sequence[ImportedContact], now: datetime
) -> list[Upserted]:
    # SQLite has no xmax: the phones present before the upsert are the updated ones. The
    # transaction holds SQLite's write lock (BEGIN IMMEDIATE), so none can appear meanwhile.
    existing: set[str] = set()
    for part in chunks([r.phone for r in rows], MAX_BIND_PARAMS):
        existing.update(session.scalars(select(CONTACTS.c.phone).where(CONTACTS.c.phone.in_(part))))
    insert = sqlite.insert(CONTACTS)
    merged = func.json_patch(CONTACTS.c.attributes, insert.excluded.attributes)
    stmt = insert.on_conflict_do_update(
        index_elements=[CONTACTS.c.phone], set_=_update_set(insert.excluded, merged)
    ).returning(CONTACTS.c.id, CONTACTS.c.phone)
    params = [{**r._asdict(), "created_at": now, "updated_at": now} for r in rows]
    # executemany: SQLAlchemy compiles the statement once and sends multi-row VALUES pages
    # ("insertmanyvalues") within SQLite's bind-parameter limit.
    page = MAX_BIND_PARAMS // len(params[0])
    result = session.execute(stmt.execution_options(insertmanyvalues_page_size=page), params)
    return [Upserted(i, p, p not in existing) for i, p in result]


def _update_set(excluded: Any, attributes: Any) -> dict[str, Any]:
    return {
        "first_name": case(
            (excluded.first_name != "", excluded.first_name), else_=CONTACTS.c.first_name
        ),
        "last_name": case(
            (excluded.last_name != "", excluded.last_name), else_=CONTACTS.c.last_name
        ),
        "attributes": attributes,
        "updated_at": excluded.updated_at,
    }
