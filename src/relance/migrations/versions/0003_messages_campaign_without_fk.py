"""messages.campaign_id keeps no foreign key of its own (the recipient's covers it).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_messages_campaign_id_campaigns"


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_constraint(FK, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.create_foreign_key(FK, "campaigns", ["campaign_id"], ["id"], ondelete="CASCADE")
