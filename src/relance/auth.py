"""API keys: random, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from relance.models import ApiKey, utcnow

KEY_PREFIX = "rl_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, name: str = "") -> str:
    """Store a new key's hash and return the key itself (the only time it is seen)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(name=name, prefix=key[:10], key_hash=hash_key(key)))
    session.flush()
    return key


def find_api_key(session: Session, key: str) -> ApiKey | None:
    """The stored key matching ``key``; a unique-index lookup on the hash, so no timing leak."""
    if not key.startswith(KEY_PREFIX):
        return None
    found = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))
    if found is not None:
        now = utcnow()
        # At most one write a minute per key: on SQLite every write takes the database lock.
        session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == found.id,
                or_(
                    ApiKey.last_used_at.is_(None), ApiKey.last_used_at < now - timedelta(minutes=1)
                ),
            )
            .values(last_used_at=now)
        )
    return found
