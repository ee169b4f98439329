"""A recipient outlives its contact: recipients.contact_id nullable, ON DELETE SET NULL.

Also an index on campaign_contacts.contact_id: deleting a contact looks it up there.

Deleting a contact erases its personal data, but the finished campaigns it was part of keep
its recipient, anonymised (``contact_id`` NULL) with its states, times and messages, so that
their numbers still add up (before, the recipient and its messages were deleted with it).

Downgrade: the previous revision cannot hold a recipient without a contact. The anonymised
recipients are deleted with their messages (their inbound events are unlinked), which is what
that revision did when their contact was deleted; the campaigns' stored counters keep counting
them, so a recount of a completed campaign no longer matches them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_recipients_contact_id_contacts"
IX = "ix_campaign_contacts_contact_id"
ANONYMISED = "SELECT id FROM recipients WHERE contact_id IS NULL"


def _contact_id(nullable: bool, ondelete: str) -> None:
    # On SQLite this rebuilds the table (env.py turns foreign keys off around it, or dropping
    # the old table would delete every message); on PostgreSQL it is three ALTERs.
    with op.batch_alter_table("recipients") as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")
        batch_op.alter_column("contact_id", existing_type=sa.Integer(), nullable=nullable)
        batch_op.create_foreign_key(FK, "contacts", ["contact_id"], ["id"], ondelete=ondelete)


def upgrade() -> None:
    _contact_id(nullable=True, ondelete="SET NULL")
    op.create_index(IX, "campaign_contacts", ["contact_id"])


def downgrade() -> None:
    # Explicit rather than by ON DELETE actions: on SQLite they are off during migrations.
    op.execute(
        "UPDATE inbound_events SET message_id = NULL WHERE message_id IN "
        f"(SELECT id FROM messages WHERE recipient_id IN ({ANONYMISED}))"
    )
    op.execute(
        f"UPDATE inbound_events SET recipient_id = NULL WHERE recipient_id IN ({ANONYMISED})"
    )
    op.execute(f"DELETE FROM messages WHERE recipient_id IN ({ANONYMISED})")
    op.execute("DELETE FROM recipients WHERE contact_id IS NULL")
    op.drop_index(IX, table_name="campaign_contacts")
    _contact_id(nullable=False, ondelete="CASCADE")
