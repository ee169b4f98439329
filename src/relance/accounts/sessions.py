"""Signed-in browsers: the cookie holds a random id, the database its hash and its limits.

A session ends when its user signs out, when an admin ends it, after ``SESSION_IDLE_SECONDS``
without a request, or ``SESSION_MAX_SECONDS`` after sign-in whatever the activity. A disabled
user's sessions stop working at once.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from relance.accounts.principal import Principal
from relance.accounts.roles import Role
from relance.config import Settings
from relance.models import User, UserSession, utcnow

COOKIE = "relance_session"
TOUCH_EVERY = timedelta(minutes=1)  # on SQLite every write takes the database lock


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    session: Session,
    settings: Settings,
    user: User,
    address: str = "",
    user_agent: str = "",
    now: datetime | None = None,
) -> str:
    """A new session for ``user``; the token for the cookie (never stored)."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    session.add(
        UserSession(
            id_hash=_hash(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=settings.session_max_seconds),
            address=address[:64],
            user_agent=user_agent[:300],
        )
    )
    session.flush()
    return token


def resolve(
    session: Session, settings: Settings, token: str, now: datetime | None = None
) -> Principal | None:
    """Who the cookie signs in, or None: unknown, expired, idle too long, or user disabled."""
    now = now or utcnow()
    row = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.id_hash == _hash(token))
    ).first()
    if row is None:
        return None
    found, user = row
    idle_until = found.last_seen_at + timedelta(seconds=settings.session_idle_seconds)
    if user.disabled_at is not None or now >= found.expires_at or now >= idle_until:
        return None
    if now - found.last_seen_at >= TOUCH_EVERY:
        session.execute(
            update(UserSession)
            .where(UserSession.id_hash == found.id_hash)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
    return Principal(
        user_id=user.id,
        role=Role(user.role),
        actor=f"user:{user.id}",
        label=user.email,
        session_hash=found.id_hash,
    )


def close(session: Session, token: str) -> None:
    session.execute(delete(UserSession).where(UserSession.id_hash == _hash(token)))


def close_all(session: Session, user_id: int, keep: str | None = None) -> int:
    """End every session of the user (but ``keep``, a session's hash); how many ended."""
    query = delete(UserSession).where(UserSession.user_id == user_id)
    if keep is not None:
        query = query.where(UserSession.id_hash != keep)
    result = session.execute(query)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def list_sessions(session: Session, user_id: int) -> list[UserSession]:
    return list(
        session.scalars(
            select(UserSession)
            .where(UserSession.user_id == user_id)
            .order_by(UserSession.last_seen_at.desc())
        )
    )


def open_counts(
    session: Session, settings: Settings, now: datetime | None = None
) -> dict[int, int]:
    """How many sessions each user has open now (neither expired nor idle too long)."""
    now = now or utcnow()
    idle_since = now - timedelta(seconds=settings.session_idle_seconds)
    rows = session.execute(
        select(UserSession.user_id, func.count())
        .where(UserSession.expires_at > now, UserSession.last_seen_at > idle_since)
        .group_by(UserSession.user_id)
    )
    return {user_id: count for user_id, count in rows}
