"""senders.portfolio (Meta counts the messaging limit per business portfolio) and
senders.meta_checked_at (the Graph API's last answer for the number).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relance.models.base

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("senders") as batch:
        batch.add_column(sa.Column("portfolio", sa.String(100), nullable=True))
        batch.add_column(
            sa.Column(
                "meta_checked_at", relance.models.base.UTCDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("senders") as batch:
        batch.drop_column("meta_checked_at")
        batch.drop_column("portfolio")
