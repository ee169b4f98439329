"""Where each opt-out and opt-in came from: contacts.opt_changed_at / opt_source, and a history.

A contact opts out by a stop keyword, Meta's "Stop promotions" button, WhatsApp's marketing
preference (``user_preferences``), the API, or a send Meta refused because the user stopped
marketing messages; it opts back in by the preference's ``resume`` or the API. The contact
row carries its last change (listing contacts needs no join), ``contact_opt_changes`` every
change (proof of consent, erased with the contact). Contacts opted out before this revision
keep ``opted_out_at`` as the time of their last change, with no source: it was not recorded.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relance.models.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "contacts",
        sa.Column("opt_changed_at", relance.models.base.UTCDateTime(timezone=True), nullable=True),
    )
    op.add_column("contacts", sa.Column("opt_source", sa.String(length=20), nullable=True))
    op.execute("UPDATE contacts SET opt_changed_at = opted_out_at WHERE opted_out_at IS NOT NULL")
    contact = sa.ForeignKey(
        "contacts.id", name="fk_contact_opt_changes_contact_id_contacts", ondelete="CASCADE"
    )
    op.create_table(
        "contact_opt_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), contact, nullable=False),
        sa.Column("opted_out", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("changed_at", relance.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contact_opt_changes"),
    )
    op.create_index(
        op.f("ix_contact_opt_changes_contact_id"), "contact_opt_changes", ["contact_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_contact_opt_changes_contact_id"), table_name="contact_opt_changes")
    op.drop_table("contact_opt_changes")
    # On SQLite a dropped column rebuilds the table (env.py turns foreign keys off around it).
    with op.batch_alter_table("contacts") as batch_op:
        batch_op.drop_column("opt_source")
        batch_op.drop_column("opt_changed_at")
