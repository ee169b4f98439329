"""metric_samples: counters of /metrics summed across processes (relance.metrics).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "metric_samples",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("labels", sa.String(500), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels", name=op.f("pk_metric_samples")),
    )


def downgrade() -> None:
    op.drop_table("metric_samples")
