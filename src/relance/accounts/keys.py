"""API keys: random, shown once, stored as a SHA-256 hash; each owned by a user, with a role no
higher than the owner's, revocable (a revoked key fails at once)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from relance.accounts.principal import Principal
from relance.accounts.roles import Role, at_most, effective
from relance.accounts.users import command_line_account
from relance.errors import Conflict, Invalid, not_found
from relance.models import ApiKey, User, utcnow

KEY_PREFIX = "rl_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    session: Session, name: str = "", owner: User | None = None, role: Role | str | None = None
) -> str:
    """Store a new key's hash and return the key itself (the only time it is seen)."""
    return issue_api_key(session, name, owner, role)[1]


def issue_api_key(
    session: Session, name: str = "", owner: User | None = None, role: Role | str | None = None
) -> tuple[ApiKey, str]:
    """A new key's row and the key itself (the only time it is seen).

    Without an owner, the key belongs to the command line's account (an admin that cannot sign
    in); without a role, it has its owner's.
    """
    owner = owner or command_line_account(session)
    role = Role(role or owner.role)
    if not at_most(role, owner.role):
        raise Invalid(
            [{"field": "role", "msg": f"a key of {owner.email} can be {owner.role} at most"}]
        )
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key), user_id=owner.id, role=role)
    session.add(row)
    session.flush()
    return row, key


def find_api_key(session: Session, key: str, now: datetime | None = None) -> Principal | None:
    """Who the key acts as, or None: unknown, revoked, or its owner disabled.

    A unique-index lookup on the hash, so no timing leak; its role is capped by its owner's.
    """
    if not key.startswith(KEY_PREFIX):
        return None
    row = session.execute(
        select(ApiKey, User)
        .join(User, User.id == ApiKey.user_id)
        .where(ApiKey.key_hash == hash_key(key))
    ).first()
    if row is None:
        return None
    found, owner = row
    if found.revoked_at is not None or owner.disabled_at is not None:
        return None
    now = now or utcnow()
    # At most one write a minute per key: on SQLite every write takes the database lock.
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == found.id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - timedelta(minutes=1)),
        )
        .values(last_used_at=now)
    )
    return Principal(
        user_id=owner.id,
        role=effective(found.role, owner.role),
        actor=f"key:{found.id}",
        label=f"key {found.name or found.prefix!r} of {owner.email}",
        key_id=found.id,
    )


def list_keys(session: Session, user_id: int | None = None) -> list[tuple[ApiKey, User]]:
    query = select(ApiKey, User).join(User, User.id == ApiKey.user_id).order_by(ApiKey.id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return [(key, user) for key, user in session.execute(query)]


def get_key(session: Session, ident: str | int) -> ApiKey:
    """A key by id or by its prefix (``rl_AbCdEfG``, as listed)."""
    text = str(ident)
    query = (
        select(ApiKey).where(ApiKey.id == int(text))
        if text.isdigit()
        else select(ApiKey).where(ApiKey.prefix == text)
    )
    keys = session.scalars(query).all()
    if len(keys) > 1:
        raise Conflict(f"{len(keys)} keys start with {text!r}: give the id")
    if not keys:
        raise not_found("API key", text)
    return keys[0]


def revoke(session: Session, key: ApiKey, now: datetime | None = None) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = now or utcnow()
        session.flush()
    return key
