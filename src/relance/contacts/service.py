"""Contact and category use cases: they flush, the entrypoint commits."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from relance.config import Settings
from relance.contacts import deletion, suppression
from relance.contacts import repository as repo
from relance.contacts.consent import opt_out_suppressed
from relance.contacts.domain import InvalidPhone, name_campaigns, normalize_phone
from relance.contacts.schemas import CategoryCreate, CategoryUpdate, ContactCreate, ContactUpdate
from relance.errors import Conflict, Invalid, found
from relance.models import Category, Contact, utcnow


def field_error(field: str, msg: str, *, location: str = "body", **extra: Any) -> Invalid:
    """A 422 shaped like FastAPI's own validation errors, naming the field."""
    error = {"loc": [location, field], "field": field, "msg": msg, "type": "value_error", **extra}
    return Invalid([error])


def _phone(raw: str, settings: Settings) -> str:
    try:
        return normalize_phone(raw, settings.default_region)
    except InvalidPhone as exc:
        raise field_error("phone", str(exc)) from None


def _check_phone_free(session: Session, phone: str, contact_id: int | None = None) -> None:
    owner = repo.phone_owner(session, phone)
    if owner is not None and owner != contact_id:
        raise Conflict(f"phone {phone} already belongs to contact {owner}")


def _check_categories(session: Session, category_ids: Collection[int]) -> None:
    missing = repo.missing_category_ids(session, category_ids)
    if missing:
        raise field_error("category_ids", f"unknown category ids: {missing}", ids=missing)


def _flush(session: Session, conflict: str) -> None:
    # The checks above answer the common case; this catches a concurrent writer.
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(conflict) from None


# Contacts ------------------------------------------------------------------------------


def create_contact(session: Session, settings: Settings, data: ContactCreate) -> Contact:
    """Create a contact with its categories, or raise before writing anything."""
    phone = _phone(data.phone, settings)
    _check_categories(session, data.category_ids)
    _check_phone_free(session, phone)
    contact = Contact(
        phone=phone,
        first_name=data.first_name,
        last_name=data.last_name,
        attributes=dict(data.attributes),
    )
    session.add(contact)
    _flush(session, f"phone {phone} already belongs to another contact")
    repo.link_contacts(session, [(contact.id, c) for c in sorted(set(data.category_ids))])
    opt_out_suppressed(session, [(contact.id, contact.phone)], utcnow())
    return contact


def contacts_by_id(session: Session, ids: Sequence[int]) -> list[Contact]:
    """The contacts of ``ids`` that exist, in id order."""
    if not ids:
        return []
    return list(
        session.scalars(select(Contact).where(Contact.id.in_(list(ids))).order_by(Contact.id))
    )


def get_contact(session: Session, contact_id: int) -> Contact:
    return found(repo.get_contact(session, contact_id), "contact", contact_id)


@dataclass(frozen=True)
class ContactQuery:
    """Which contacts to list: one page, in a category, matching a search."""

    limit: int
    offset: int = 0
    category_id: int | None = None
    search: str | None = None  # part of a name or phone, or a whole phone however written
    opted_out: bool | None = None  # only those opted out (True) or not (False)


def search_terms(settings: Settings, text: str | None) -> tuple[str | None, str | None]:
    """The text to find in names and phones, and the phone it is once normalised, if one."""
    search = (text or "").strip() or None
    exact_phone = None
    if search:
        try:
            exact_phone = normalize_phone(search, settings.default_region)
        except InvalidPhone:
            exact_phone = None
    return search, exact_phone


def list_contacts(
    session: Session, settings: Settings, query: ContactQuery
) -> tuple[list[Contact], int]:
    """One page of contacts in id order, and how many match in all."""
    search, exact_phone = search_terms(settings, query.search)
    stmt = repo.contacts_query(
        category_id=query.category_id,
        search=search,
        exact_phone=exact_phone,
        opted_out=query.opted_out,
    )
    return repo.page(session, stmt, query.limit, query.offset)


def update_contact(
    session: Session, settings: Settings, contact_id: int, data: ContactUpdate
) -> Contact:
    """Apply the fields given; a phone is re-normalised and must stay unique.

    ``opted_out`` is the caller's to apply with ``campaigns.answers.opt_out`` (the path of a
    STOP reply: the open recipients of the contact end too, not only its flag) or ``opt_in``.
    """
    contact = get_contact(session, contact_id)
    phone = _phone(data.phone, settings) if data.phone is not None else None
    if data.category_ids is not None:
        _check_categories(session, data.category_ids)
    if phone is not None:
        _check_phone_free(session, phone, contact.id)
        contact.phone = phone
    if data.first_name is not None:
        contact.first_name = data.first_name
    if data.last_name is not None:
        contact.last_name = data.last_name
    if data.attributes is not None:
        contact.attributes = dict(data.attributes)
    if data.category_ids is not None:
        repo.set_contact_categories(session, contact.id, data.category_ids)
    contact.updated_at = utcnow()
    _flush(session, f"phone {contact.phone} already belongs to another contact")
    return contact


def delete_contact(session: Session, contact_id: int) -> None:
    """Erase a contact, unless a campaign that has not finished with it needs it.

    Its finished campaigns keep its recipient, anonymised: ``contact_id`` NULL, states and
    times kept, the webhook payloads and error texts about it erased (right to erasure).
    """
    contact = found(deletion.lock_contact(session, contact_id), "contact", contact_id)
    # An open recipient needs the contact's phone and names for its next message.
    running = deletion.open_campaigns_of(session, contact_id)
    if running:
        raise Conflict(
            f"contact {contact_id} is still a recipient of unfinished campaigns {running}: "
            "opt it out instead, or wait until they finish"
        )
    # A campaign not started yet would lose it from its audience without a word.
    listing = deletion.not_started_campaigns_listing(session, contact_id)
    if listing:
        raise Conflict(
            f"contact {contact_id} is listed in draft or scheduled campaigns "
            f"{name_campaigns(listing)}: remove it from them first"
        )
    deletion.erase_traces_of(session, contact_id, contact.phone)
    if contact.opted_out_at is not None:  # its "stop" outlives it (``suppression``)
        suppression.remember(session, contact.phone, contact.opted_out_at)
    # The database does the rest: its recipients' contact_id becomes NULL (ON DELETE SET
    # NULL), its category links and the lists of campaigns already started go (CASCADE).
    session.delete(contact)
    session.flush()


def category_ids_of(session: Session, contacts: Sequence[Contact]) -> dict[int, list[int]]:
    return repo.category_ids_by_contact(session, [c.id for c in contacts])


# Categories ----------------------------------------------------------------------------


def _check_name_free(session: Session, name: str, category_id: int | None = None) -> None:
    # Names are unique ignoring case, as the CSV import matches them.
    other = repo.category_named(session, name)
    if other is not None and other.id != category_id:
        raise Conflict(f"category {other.name!r} already exists (id {other.id})")


def create_category(session: Session, data: CategoryCreate) -> Category:
    _check_name_free(session, data.name)
    category = Category(name=data.name, description=data.description)
    session.add(category)
    _flush(session, f"category {data.name!r} already exists")
    return category


def get_category(session: Session, category_id: int) -> Category:
    return found(repo.get_category(session, category_id), "category", category_id)


def list_categories(
    session: Session, *, limit: int, offset: int
) -> tuple[list[tuple[Category, int]], int]:
    """One page of categories with their contact counts, and how many there are."""
    return repo.categories_with_counts(session, limit, offset)


def update_category(session: Session, category_id: int, data: CategoryUpdate) -> Category:
    category = get_category(session, category_id)
    if data.name is not None:
        _check_name_free(session, data.name, category.id)
        category.name = data.name
    if data.description is not None:
        category.description = data.description
    _flush(session, f"category {data.name!r} already exists")
    return category


def delete_category(session: Session, category_id: int) -> None:
    """Delete a category; its contacts stay, only the links go.

    Refused while a draft or scheduled campaign targets it: its audience would change, or
    become empty, without anyone being told.
    """
    category = found(deletion.lock_category(session, category_id), "category", category_id)
    using = deletion.not_started_campaigns_using(session, category_id)
    if using:
        raise Conflict(
            f"category {category_id} is used by draft or scheduled campaigns "
            f"{name_campaigns(using)}: remove it from them first"
        )
    session.delete(category)
    session.flush()


def contact_count(session: Session, category_id: int) -> int:
    return repo.contact_count(session, category_id)


def add_contacts_to_category(
    session: Session, category_id: int, contact_ids: Collection[int]
) -> Category:
    """Link the contacts; all must exist, already-linked ones are fine."""
    category = get_category(session, category_id)
    missing = repo.missing_contact_ids(session, contact_ids)
    if missing:
        raise field_error("contact_ids", f"unknown contact ids: {missing}", ids=missing)
    repo.link_contacts(session, [(c, category.id) for c in sorted(set(contact_ids))])
    return category


def count_audience(
    session: Session, category_ids: Collection[int], contact_ids: Collection[int]
) -> tuple[int, int]:
    """(reachable, opted out) distinct contacts in the categories or listed by id."""
    return repo.audience_counts(session, category_ids, contact_ids)
