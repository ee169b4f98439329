"""Contacts, categories and their many-to-many link."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from relance.models.base import Base, link_table, utcnow

contact_categories = link_table(
    "contact_categories", "contact_id->contacts", "category_id->categories", index_right=True
)


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)  # E.164
    first_name: Mapped[str] = mapped_column(String(200), default="")
    last_name: Mapped[str] = mapped_column(String(200), default="")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    opted_out_at: Mapped[datetime | None]
    # The last opt-out or opt-in, when and from what (OptSource); its history: ContactOptChange.
    opt_changed_at: Mapped[datetime | None]
    opt_source: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ContactOptChange(Base):
    """One opt-out or opt-in of a contact: when, and from what (an OptSource).

    Kept as proof of consent; erased with the contact."""

    __tablename__ = "contact_opt_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), index=True
    )
    opted_out: Mapped[bool]
    source: Mapped[str] = mapped_column(String(20))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class SuppressedPhone(Base):
    """An opted-out number whose contact was erased: a contact made again with it (an import,
    the API) starts opted out. The number is kept as its SHA-256 only (``contacts.suppression``).
    """

    __tablename__ = "suppressed_phones"

    phone_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    opted_out_at: Mapped[datetime]


class Category(Base):
    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
