"""Senders as data: the senders table, campaign_senders, recipients' and messages' sender_id.

The upgrade creates the default sender (the number the environment configures), so that an
install configured before senders existed keeps sending from the same number: recipients and
messages whose ``sender_id`` is NULL belong to it. The dispatcher's two partial indexes gain
``sender_id`` (each sender's queue is claimed apart). The downgrade drops all of it; the rows
sent from other senders stay, as if sent from the default one.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import relance.models.base

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DUE = sa.text("state = 'queued' AND message_1_created_at IS NULL")
PENDING = sa.text("status = 'pending'")
M1 = sa.text("kind = 'message_1'")


def upgrade() -> None:
    when = relance.models.base.UTCDateTime(timezone=True)
    op.create_table(
        "senders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("phone_number_id", sa.String(length=100), nullable=True),
        sa.Column("twilio_from", sa.String(length=100), nullable=True),
        sa.Column("wassenger_device", sa.String(length=100), nullable=True),
        sa.Column("display_number", sa.String(length=40), nullable=True),
        sa.Column("throughput_per_second", sa.Float(), nullable=True),
        sa.Column("messaging_limit", sa.Integer(), nullable=True),
        sa.Column("quality_rating", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("paused_reason", sa.Text(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("updated_at", when, nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'slowed', 'paused', 'stopped')",
            name=op.f("ck_senders_status_valid"),
        ),
        sa.CheckConstraint(
            "throughput_per_second IS NULL OR throughput_per_second > 0",
            name=op.f("ck_senders_tps"),
        ),
        sa.CheckConstraint(
            "messaging_limit IS NULL OR messaging_limit > 0",
            name=op.f("ck_senders_limit_positive"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_senders")),
        sa.UniqueConstraint("name", name=op.f("uq_senders_name")),
    )
    op.create_table(
        "campaign_senders",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Integer(), nullable=False),
        sa.CheckConstraint("weight > 0", name=op.f("ck_campaign_senders_weight_positive")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_senders_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"],
            ["senders.id"],
            name=op.f("fk_campaign_senders_sender_id_senders"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "sender_id", name=op.f("pk_campaign_senders")),
    )
    op.create_index(
        op.f("ix_campaign_senders_sender_id"), "campaign_senders", ["sender_id"], unique=False
    )
    op.add_column("recipients", sa.Column("sender_id", sa.Integer(), nullable=True))
    op.add_column("messages", sa.Column("sender_id", sa.Integer(), nullable=True))
    _reindex(["campaign_id", "sender_id", "id"], ["priority", "campaign_id", "sender_id", "id"])
    op.create_index(
        "ix_messages_sender_window",
        "messages",
        ["sender_id", "created_at"],
        postgresql_where=M1,
        sqlite_where=M1,
    )
    _default_sender()


def _reindex(due: list[str], dispatch: list[str]) -> None:
    op.drop_index("ix_recipients_message_1_due", table_name="recipients")
    op.create_index(
        "ix_recipients_message_1_due", "recipients", due, postgresql_where=DUE, sqlite_where=DUE
    )
    op.drop_index("ix_messages_dispatch", table_name="messages")
    op.create_index(
        "ix_messages_dispatch",
        "messages",
        dispatch,
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )


def _default_sender() -> None:
    from relance.config import get_settings
    from relance.senders.identity import default_sender_values

    values = default_sender_values(get_settings())
    senders = sa.table(
        "senders",
        *(sa.column(name) for name in values),
    )
    op.get_bind().execute(sa.insert(senders).values(**values))


def downgrade() -> None:
    op.drop_index("ix_messages_sender_window", table_name="messages")
    _reindex(["campaign_id", "id"], ["priority", "campaign_id", "id"])
    # Not in batch mode (see 0010): SQLite >= 3.35 drops a column in place.
    op.drop_column("messages", "sender_id")
    op.drop_column("recipients", "sender_id")
    op.drop_index(op.f("ix_campaign_senders_sender_id"), table_name="campaign_senders")
    op.drop_table("campaign_senders")
    op.drop_table("senders")
