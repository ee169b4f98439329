"""suppressed_phones: the opted-out numbers of erased contacts, as SHA-256, so that a contact
made again with one starts opted out.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relance.models.base

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "suppressed_phones",
        sa.Column("phone_hash", sa.String(64), nullable=False),
        sa.Column("opted_out_at", relance.models.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("phone_hash", name=op.f("pk_suppressed_phones")),
    )


def downgrade() -> None:
    op.drop_table("suppressed_phones")
