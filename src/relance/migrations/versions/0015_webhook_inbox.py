"""webhook_inbox: verified webhook bodies appended by the route, applied in batches by workers.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "webhook_inbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("received_at", when, nullable=False),
        sa.Column("applied_at", when, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_inbox")),
    )
    unapplied = sa.text("applied_at IS NULL")
    op.create_index(
        "ix_webhook_inbox_unapplied_id",
        "webhook_inbox",
        ["id"],
        postgresql_where=unapplied,
        sqlite_where=unapplied,
    )
    op.create_index(
        "ix_webhook_inbox_unapplied_received",
        "webhook_inbox",
        ["received_at"],
        postgresql_where=unapplied,
        sqlite_where=unapplied,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_inbox_unapplied_received", table_name="webhook_inbox")
    op.drop_index("ix_webhook_inbox_unapplied_id", table_name="webhook_inbox")
    op.drop_table("webhook_inbox")
