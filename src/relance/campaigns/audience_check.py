"""The audience check of the campaign form: which placeholders lack a value, for how many of
the audience's contacts, with a few of them as examples. Every contact is read (as the launch
does), but only when some placeholder has no fallback value: otherwise none can lack one."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import ColumnElement, exists, or_, select
from sqlalchemy.orm import Session

from relance.contacts.domain import contact_values, missing_placeholders
from relance.models import Contact, contact_categories

EXAMPLES = 3


def audience_where(
    category_ids: Collection[int], contact_ids: Collection[int]
) -> ColumnElement[bool] | None:
    """Reachable contacts in any of the categories or listed by id (None: no audience)."""
    conditions: list[ColumnElement[bool]] = []
    if contact_ids:
        conditions.append(Contact.id.in_(sorted(set(contact_ids))))
    if category_ids:
        links = contact_categories.c
        conditions.append(
            exists().where(
                links.contact_id == Contact.id, links.category_id.in_(sorted(set(category_ids)))
            )
        )
    if not conditions:
        return None
    return or_(*conditions) & Contact.opted_out_at.is_(None)


def missing_values(
    session: Session,
    texts: Sequence[str],
    defaults: dict[str, Any],
    category_ids: Collection[int],
    contact_ids: Collection[int],
) -> list[dict[str, Any]]:
    """``[{placeholder, contacts, examples: [{id, phone, name}]}]``, by placeholder name."""
    needed = set().union(*(missing_placeholders(t, {}) for t in texts)) - set(defaults)
    where = audience_where(category_ids, contact_ids)
    if not needed or where is None:
        return []
    counts: dict[str, int] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    rows = session.execute(
        select(Contact.id, Contact.phone, Contact.first_name, Contact.last_name, Contact.attributes)
        .where(where)
        .order_by(Contact.id)
        .execution_options(yield_per=1000)
    )
    for contact_id, phone, first, last, attributes in rows:
        values = contact_values(first, last, attributes or {})
        for name in needed - set(values):
            counts[name] = counts.get(name, 0) + 1
            seen = examples.setdefault(name, [])
            if len(seen) < EXAMPLES:
                name_of = " ".join(part for part in (first, last) if part)
                seen.append({"id": contact_id, "phone": phone, "name": name_of})
    return [
        {"placeholder": name, "contacts": counts[name], "examples": examples[name]}
        for name in sorted(counts)
    ]
