"""People: an email, a display name, an Argon2 password hash, a role; disabled, never deleted
(the audit log keeps naming them)."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relance.accounts import passwords
from relance.accounts.roles import Role
from relance.errors import Conflict, Invalid, found
from relance.models import User, utcnow

# Accounts that own keys but never sign in (no password): made when first needed.
COMMAND_LINE_EMAIL = "cli@relance.invalid"
MIGRATED_EMAIL = "migrated@relance.invalid"
SYSTEM_EMAILS = frozenset({COMMAND_LINE_EMAIL, MIGRATED_EMAIL})


def normalize_email(email: str) -> str:
    text = email.strip().lower()
    if not 3 <= len(text) <= 320 or "@" not in text[1:-1] or any(c.isspace() for c in text):
        raise Invalid([{"field": "email", "msg": "not an email address"}])
    return text


def _password_hash(password: str) -> str:
    why = passwords.problem(password)
    if why:
        raise Invalid([{"field": "password", "msg": why}])
    return passwords.hash_password(password)


def create_user(
    session: Session, email: str, password: str | None, role: Role | str, display_name: str = ""
) -> tuple[User, str | None]:
    """A new user; without a password, one is made up and returned (shown once)."""
    email = normalize_email(email)
    if session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict(f"a user {email} exists already")
    made_up = None if password else secrets.token_urlsafe(12)
    user = User(
        email=email,
        display_name=display_name.strip()[:200],
        password_hash=_password_hash(password or made_up or ""),
        role=Role(role).value,
    )
    session.add(user)
    session.flush()
    return user, made_up


def get_user(session: Session, user_id: int) -> User:
    return found(session.get(User, user_id), "user", user_id)


def by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def list_users(session: Session) -> list[User]:
    return list(
        session.scalars(select(User).where(User.email.not_in(SYSTEM_EMAILS)).order_by(User.id))
    )


def can_sign_in_count(session: Session) -> int:
    """People who can sign in (an admin of a fresh install is the first)."""
    return (
        session.scalar(
            select(func.count()).where(User.password_hash.is_not(None), User.disabled_at.is_(None))
        )
        or 0
    )


def reset_password(session: Session, user: User, password: str | None = None) -> str | None:
    """A new password (made up and returned when none is given)."""
    made_up = None if password else secrets.token_urlsafe(12)
    user.password_hash = _password_hash(password or made_up or "")
    session.flush()
    return made_up


def _other_admins(session: Session, user: User) -> int:
    """Admins other than ``user`` who can sign in."""
    return (
        session.scalar(
            select(func.count()).where(
                User.id != user.id,
                User.role == Role.ADMIN.value,
                User.password_hash.is_not(None),
                User.disabled_at.is_(None),
            )
        )
        or 0
    )


def update_user(
    session: Session,
    user: User,
    display_name: str | None = None,
    role: Role | None = None,
    disabled: bool | None = None,
    now: datetime | None = None,
) -> list[str]:
    """Apply the given changes; the names of the fields that changed.

    The last admin who can sign in can be neither demoted nor disabled: nobody could then
    manage users from the dashboard (``relance user create`` still could).
    """
    losing_admin = user.role == Role.ADMIN and (
        (role is not None and role != Role.ADMIN) or disabled is True
    )
    if losing_admin and user.password_hash is not None and not _other_admins(session, user):
        raise Conflict(f"{user.email} is the last admin who can sign in: make another admin first")
    changed = []
    if display_name is not None and display_name.strip() != user.display_name:
        user.display_name = display_name.strip()[:200]
        changed.append("display_name")
    if role is not None and role != user.role:
        user.role = Role(role).value
        changed.append("role")
    if disabled is not None and disabled != (user.disabled_at is not None):
        user.disabled_at = (now or utcnow()) if disabled else None
        changed.append("disabled")
    session.flush()
    return changed


def command_line_account(session: Session) -> User:
    """The admin that owns keys made by ``relance apikey create`` without ``--user``."""
    user = by_email(session, COMMAND_LINE_EMAIL)
    if user is None:
        user = User(
            email=COMMAND_LINE_EMAIL,
            display_name="keys made on the command line",
            password_hash=None,
            role=Role.ADMIN.value,
        )
        session.add(user)
        session.flush()
    return user
