"""campaigns.message_2_template: Message 2 as a WhatsApp template past the 24 h window.

Message 2 is free-form only inside the 24 h customer service window the contact's reply
opened; when pacing or a pause holds it past that, the meta provider sends this template
instead (NULL: the Message 2 fails with that reason).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.add_column(sa.Column("message_2_template", json_type, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.drop_column("message_2_template")
