"""People, their sessions, their API keys, and the audit log of what they did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from relance.models.base import Base, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # Argon2id hash; NULL: cannot sign in (the accounts that own command-line and old keys).
    password_hash: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None]


class UserSession(Base):
    """A signed-in browser: the cookie holds a random id, the row its hash."""

    __tablename__ = "user_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    expires_at: Mapped[datetime]  # the absolute end, whatever the activity
    address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(300), default="")


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))  # no higher than its owner's
    revoked_at: Mapped[datetime | None]


class LoginThrottle(Base):
    """Recent sign-in failures of an account or a client address (``email:...``, ``ip:...``)."""

    __tablename__ = "login_throttle"

    key: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(default=0)
    last_failure_at: Mapped[datetime]


class AuditEvent(Base):
    """Who did what, to what, when, from where. Appended, never edited by relance."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_actor", "actor", "id"),
        Index("ix_audit_events_user_id", "user_id", "id"),
        Index("ix_audit_events_action", "action", "id"),
        Index("ix_audit_events_target", "target", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(40))  # "user:3", "key:7", "anonymous"
    actor_label: Mapped[str] = mapped_column(String(400), default="")  # for people to read
    user_id: Mapped[int | None]  # the person behind it (a key's owner); no foreign key: kept
    action: Mapped[str] = mapped_column(String(60))  # "campaign.launch", "login.failure"...
    target: Mapped[str] = mapped_column(String(200), default="")  # "campaign:12", "user:4"
    address: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
