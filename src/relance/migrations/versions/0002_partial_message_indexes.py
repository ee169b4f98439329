"""Partial indexes on messages: provider id unique when set; sends per campaign.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SET = sa.text("provider_message_id IS NOT NULL")
SENT = sa.text("sent_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_constraint("uq_messages_provider_message_id", type_="unique")
    op.create_index(
        "uq_messages_provider_message_id",
        "messages",
        ["provider_message_id"],
        unique=True,
        postgresql_where=SET,
        sqlite_where=SET,
    )
    op.create_index(
        "ix_messages_campaign_sent",
        "messages",
        ["campaign_id", "sent_at"],
        postgresql_where=SENT,
        sqlite_where=SENT,
    )


def downgrade() -> None:
    op.drop_index("ix_messages_campaign_sent", table_name="messages")
    op.drop_index("uq_messages_provider_message_id", table_name="messages")
    with op.batch_alter_table("messages") as batch_op:
        batch_op.create_unique_constraint(
            "uq_messages_provider_message_id", ["provider_message_id"]
        )
