"""Contacts as CSV: the rows of the contacts listing (same filters), read in id-keyset batches.

The columns are those of the import (``phone``, ``first_name``, ``last_name``, ``categories``
separated by ``;``) and then what the import does not take: the attributes as one JSON object,
the consent and the dates. Cells go through ``relance.csv_export`` (formula-safe, BOM).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from relance.config import Settings
from relance.contacts import repository as repo
from relance.contacts.service import ContactQuery, search_terms
from relance.db import session_scope
from relance.models import Category, Contact

COLUMNS = (
    "id",
    "phone",
    "first_name",
    "last_name",
    "categories",
    "attributes",
    "opted_out",
    "opt_source",
    "opt_changed_at",
    "created_at",
)
BATCH = 1000


def contact_rows(settings: Settings, query: ContactQuery) -> Iterator[list[list[Any]]]:
    """Batches of CSV rows, each batch read in a short transaction of its own."""
    search, exact_phone = search_terms(settings, query.search)
    stmt = repo.contacts_query(
        category_id=query.category_id, search=search, exact_phone=exact_phone
    )
    after = 0
    while True:
        with session_scope(settings) as session:
            names = dict(session.execute(select(Category.id, Category.name)).tuples().all())
            contacts = list(
                session.scalars(stmt.where(Contact.id > after).order_by(Contact.id).limit(BATCH))
            )
            links = repo.category_ids_by_contact(session, [c.id for c in contacts])
            batch = [
                [
                    c.id,
                    c.phone,
                    c.first_name,
                    c.last_name,
                    ";".join(names.get(i, str(i)) for i in links[c.id]),
                    json.dumps(c.attributes, ensure_ascii=False) if c.attributes else "",
                    c.opted_out_at is not None,
                    c.opt_source,
                    c.opt_changed_at,
                    c.created_at,
                ]
                for c in contacts
            ]
        yield batch
        if len(contacts) < BATCH:
            return
        after = contacts[-1].id
