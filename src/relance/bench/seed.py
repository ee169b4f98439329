"""Bench data: contacts by COPY (PostgreSQL) or one executemany (SQLite), audiences, campaigns.

Contact ``i`` (1-based, ids follow the insertion order of a fresh database) has the number
``+336`` followed by ``i`` on 8 digits, so every phase can address contacts by id range.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session

from relance.models import Campaign, Category, campaign_categories, campaign_contacts

M2_MARKER = "bench-m2"  # the fake Graph server notes when each text so marked arrives
M1_TEXT = "bench-m1 Bonjour, une question pour vous ?"
M2_TEXT = f"{M2_MARKER} Merci pour votre reponse !"
# The bench runs on the meta provider, where Message 1 must be an approved template.
M1_TEMPLATE = {"name": "bench_m1", "language": "fr"}
CHUNK = 50_000


def phone(i: int) -> str:
    return f"+336{i:08d}"


def _lines(start: int, stop: int, stamp: str) -> Iterator[str]:
    for first in range(start, stop, CHUNK):
        buf = io.StringIO()
        for i in range(first, min(stop, first + CHUNK)):
            buf.write(f"+336{i:08d}\tPrenom{i}\tNom\t{{}}\t{stamp}\t{stamp}\n")
        yield buf.getvalue()


def seed_contacts(engine: Engine, count: int) -> None:
    """Contacts 1..count, fast: PostgreSQL COPY, or one executemany on SQLite."""
    now = datetime.now(UTC)
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            driver = raw.driver_connection
            assert driver is not None
            with driver.cursor() as cur:
                columns = "phone, first_name, last_name, attributes, created_at, updated_at"
                with cur.copy(f"COPY contacts ({columns}) FROM STDIN") as copy:
                    for chunk in _lines(1, count + 1, now.isoformat()):
                        copy.write(chunk)
            raw.commit()
        finally:
            raw.close()
        with engine.begin() as conn:
            conn.execute(text("ANALYZE contacts"))
        return
    stamp = now.replace(tzinfo=None).isoformat(sep=" ")
    rows = [(phone(i), f"Prenom{i}", "Nom", "{}", stamp, stamp) for i in range(1, count + 1)]
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO contacts (phone, first_name, last_name, attributes, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def make_category(session: Session, name: str, first_id: int, last_id: int) -> int:
    """A category holding contacts ``first_id..last_id``, linked by one INSERT ... SELECT."""
    category = Category(name=name, description="relance bench")
    session.add(category)
    session.flush()
    session.execute(
        text(
            "INSERT INTO contact_categories (contact_id, category_id) "
            "SELECT id, :category FROM contacts WHERE id BETWEEN :lo AND :hi"
        ),
        {"category": category.id, "lo": first_id, "hi": last_id},
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE contact_categories"))
    return category.id


def make_campaign(
    session: Session,
    name: str,
    *,
    message_2: str | None = M2_TEXT,
    reply_window_seconds: int = 86400,
    category_ids: Sequence[int] = (),
    contact_ids: Sequence[int] = (),
) -> int:
    """A draft campaign with its audience, as the API would create it."""
    campaign = Campaign(
        name=name,
        message_1=M1_TEXT,
        message_1_template=M1_TEMPLATE,
        message_2=message_2,
        reply_window_seconds=reply_window_seconds,
        placeholder_defaults={},
    )
    session.add(campaign)
    session.flush()
    if category_ids:
        session.execute(
            insert(campaign_categories),
            [{"campaign_id": campaign.id, "category_id": c} for c in category_ids],
        )
    if contact_ids:
        session.execute(
            insert(campaign_contacts),
            [{"campaign_id": campaign.id, "contact_id": c} for c in contact_ids],
        )
    return campaign.id


def clear_campaigns(engine: Engine) -> None:
    """Forget every campaign, recipient, message and event (the contacts stay)."""
    tables = (
        "inbound_events, messages, recipients, campaign_contacts, campaign_categories, campaigns"
    )
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        else:
            for table in tables.split(", "):
                conn.execute(text(f"DELETE FROM {table}"))


def campaign_value(session: Session, campaign_id: int, column: str) -> int:
    col = Campaign.__table__.c[column]
    return int(session.scalar(select(col).where(Campaign.id == campaign_id)) or 0)
