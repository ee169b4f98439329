"""Signing in by email and password, with failures slowed per account and per address."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from relance.accounts import passwords, throttle
from relance.accounts.users import by_email
from relance.models import LoginThrottle, User, utcnow


class TooManyAttempts(Exception):
    """Too many recent failures: the next attempt may come at ``retry_at``."""

    def __init__(self, retry_at: datetime) -> None:
        super().__init__(f"too many failed sign-ins: try again at {retry_at.isoformat()}")
        self.retry_at = retry_at


def _keys(email: str, address: str) -> list[str]:
    return [f"email:{email.strip().lower()[:320]}", f"ip:{address[:64]}"]


def _check(session: Session, keys: list[str], now: datetime) -> None:
    rows = session.scalars(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))
    waits = [throttle.retry_at(r.failures, r.last_failure_at, now) for r in rows]
    latest = max((w for w in waits if w is not None), default=None)
    if latest is not None:
        raise TooManyAttempts(latest)


def _failed(session: Session, keys: list[str], now: datetime) -> None:
    for key in keys:
        row = session.get(LoginThrottle, key)
        if row is None:
            session.add(LoginThrottle(key=key, failures=1, last_failure_at=now))
        else:
            stale = now - row.last_failure_at > throttle.FORGET_AFTER
            row.failures = 1 if stale else row.failures + 1
            row.last_failure_at = now
    session.flush()


def authenticate(
    session: Session, email: str, password: str, address: str, now: datetime | None = None
) -> User | None:
    """The user these credentials sign in, None if they do not (the failure is counted), or
    TooManyAttempts if the account or the address must wait first (nothing is checked)."""
    now = now or utcnow()
    keys = _keys(email, address)
    _check(session, keys, now)
    user = by_email(session, email)
    ok = passwords.verify(user.password_hash if user else None, password)
    if not ok or user is None or user.disabled_at is not None:
        _failed(session, keys, now)
        return None
    session.execute(delete(LoginThrottle).where(LoginThrottle.key == keys[0]))
    return user
