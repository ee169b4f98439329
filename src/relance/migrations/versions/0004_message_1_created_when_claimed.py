"""Message 1 rows are created when claimed: recipients.message_1_created_at and its queue index.

A launch now inserts the recipients only; the dispatcher creates each Message 1 as it claims
it and stamps ``message_1_created_at`` (NULL: no Message 1 row yet). Recipients launched
before this revision already have their Message 1 row: the upgrade stamps them, so that no
claim ever creates a second one. The downgrade gives the recipients still waiting a pending
Message 1 row, as the launch used to, so that the previous code sends them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relance.models.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("state = 'queued' AND message_1_created_at IS NULL")


def upgrade() -> None:
    op.add_column(
        "recipients",
        sa.Column(
            "message_1_created_at", relance.models.base.UTCDateTime(timezone=True), nullable=True
        ),
    )
    op.execute(
        "UPDATE recipients SET message_1_created_at = ("
        "SELECT MIN(messages.created_at) FROM messages "
        "WHERE messages.recipient_id = recipients.id AND messages.kind = 'message_1')"
    )
    op.create_index(
        "ix_recipients_message_1_due",
        "recipients",
        ["campaign_id", "id"],
        postgresql_where=DUE,
        sqlite_where=DUE,
    )


def downgrade() -> None:
    from relance.config import get_settings

    op.get_bind().execute(
        sa.text(
            "INSERT INTO messages (recipient_id, campaign_id, kind, priority, status, provider, "
            "attempts, created_at, next_attempt_at) "
            "SELECT id, campaign_id, 'message_1', 1, 'pending', :provider, 0, "
            "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM recipients "
            "WHERE state = 'queued' AND message_1_created_at IS NULL"
        ),
        {"provider": get_settings().provider},
    )
    op.drop_index("ix_recipients_message_1_due", table_name="recipients")
    # Not in batch mode: on SQLite it would copy the table and drop the old one, and with
    # foreign keys on, that drop deletes every message (ON DELETE CASCADE). SQLite >= 3.35
    # drops a column in place.
    op.drop_column("recipients", "message_1_created_at")
