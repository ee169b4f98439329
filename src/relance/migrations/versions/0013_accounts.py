"""Accounts: users, their sessions, API keys owned by users with a role, the audit log.

Keys made before accounts keep working: they become admin keys of a "migrated" account that
cannot sign in (no password). The downgrade drops the accounts and keeps the keys that still
worked (a revoked key, or one of a disabled user, is deleted: without accounts it would work).

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MIGRATED_EMAIL = "migrated@relance.invalid"


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("disabled_at", when, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "user_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", when, nullable=False),
        sa.Column("last_seen_at", when, nullable=False),
        sa.Column("expires_at", when, nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(300), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_user_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_user_sessions")),
    )
    op.create_index(op.f("ix_user_sessions_user_id"), "user_sessions", ["user_id"])
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", when, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttle")),
    )
    json_type = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", when, nullable=False),
        sa.Column("actor", sa.String(40), nullable=False),
        sa.Column("actor_label", sa.String(400), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("detail", json_type, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_actor", "audit_events", ["actor", "id"])
    op.create_index("ix_audit_events_user_id", "audit_events", ["user_id", "id"])
    op.create_index("ix_audit_events_action", "audit_events", ["action", "id"])
    op.create_index("ix_audit_events_target", "audit_events", ["target", "id"])

    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("role", sa.String(20), nullable=True))
        batch.add_column(sa.Column("revoked_at", when, nullable=True))
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT count(*) FROM api_keys")).scalar():
        users = sa.table(
            "users",
            sa.column("email"),
            sa.column("display_name"),
            sa.column("role"),
            sa.column("created_at", when),
        )
        bind.execute(
            users.insert().values(
                email=MIGRATED_EMAIL,
                display_name="keys made before accounts",
                role="admin",
                created_at=sa.func.now(),
            )
        )
        owner = bind.execute(
            sa.text("SELECT id FROM users WHERE email = :email"), {"email": MIGRATED_EMAIL}
        ).scalar_one()
        bind.execute(
            sa.text("UPDATE api_keys SET user_id = :owner, role = 'admin'"), {"owner": owner}
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch.alter_column("role", existing_type=sa.String(20), nullable=False)
        batch.create_foreign_key(op.f("fk_api_keys_user_id_users"), "users", ["user_id"], ["id"])
        batch.create_index(op.f("ix_api_keys_user_id"), ["user_id"])


def downgrade() -> None:
    # Without owners and revocation, a revoked key (or one of a disabled user) would work again.
    op.execute(
        "DELETE FROM api_keys WHERE revoked_at IS NOT NULL OR user_id IN "
        "(SELECT id FROM users WHERE disabled_at IS NOT NULL)"
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index(op.f("ix_api_keys_user_id"))
        batch.drop_constraint(op.f("fk_api_keys_user_id_users"), type_="foreignkey")
        batch.drop_column("revoked_at")
        batch.drop_column("role")
        batch.drop_column("user_id")
    op.drop_index("ix_audit_events_target", table_name="audit_events")
    op.drop_index("ix_audit_events_action", table_name="audit_events")
    op.drop_index("ix_audit_events_user_id", table_name="audit_events")
    op.drop_index("ix_audit_events_actor", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_table("login_throttle")
    op.drop_index(op.f("ix_user_sessions_user_id"), table_name="user_sessions")
    op.drop_table("user_sessions")
    op.drop_table("users")
