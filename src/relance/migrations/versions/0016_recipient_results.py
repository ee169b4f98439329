"""Results people can act on: the answer's text per recipient, keyset pages, cancelled_at.

``recipients.reply_text`` keeps what the contact answered (its text, or what it was: a button's
title, an emoji, "image"); recipients that replied before this revision have none. The index
``(campaign_id, state)`` gains the id, so that a page of one state in id order is an ordered
index scan at any depth. ``completed_at`` now belongs to completed campaigns only: a cancelled
campaign has ``cancelled_at``, and the upgrade clears the ``completed_at`` relance used to set
on cancelled ones too. The downgrade puts it back (it was the cancellation time).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("recipients", sa.Column("reply_text", sa.Text(), nullable=True))
    op.create_index("ix_recipients_campaign_state_id", "recipients", ["campaign_id", "state", "id"])
    op.drop_index("ix_recipients_campaign_state", table_name="recipients")
    op.execute("UPDATE campaigns SET completed_at = NULL WHERE status = 'cancelled'")


def downgrade() -> None:
    op.execute(
        "UPDATE campaigns SET completed_at = cancelled_at "
        "WHERE status = 'cancelled' AND completed_at IS NULL"
    )
    op.create_index("ix_recipients_campaign_state", "recipients", ["campaign_id", "state"])
    op.drop_index("ix_recipients_campaign_state_id", table_name="recipients")
    # Not in batch mode (see 0010): SQLite >= 3.35 drops a column in place.
    op.drop_column("recipients", "reply_text")
