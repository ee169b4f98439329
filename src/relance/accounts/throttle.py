"""Slowing repeated sign-in failures, per account and per client address. The rule is pure.

After ``FREE_FAILURES`` failures, each new attempt must wait twice as long as the one before,
from the last failure, up to ``MAX_WAIT``: a password guesser slows to a crawl, while the real
owner is never locked out for longer than ``MAX_WAIT``. Failures older than ``FORGET_AFTER``
count no more; a success clears the account's count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

FREE_FAILURES = 5
FIRST_WAIT = timedelta(seconds=2)
MAX_WAIT = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)


def wait_after(failures: int) -> timedelta:
    """How long after the last failure the next attempt must wait."""
    if failures < FREE_FAILURES:
        return timedelta(0)
    doubled: timedelta = FIRST_WAIT * (2 ** min(failures - FREE_FAILURES, 20))
    return min(MAX_WAIT, doubled)


def retry_at(failures: int, last_failure_at: datetime, now: datetime) -> datetime | None:
    """When the next attempt may come, or None if it may come now."""
    if now - last_failure_at > FORGET_AFTER:
        return None
    at = last_failure_at + wait_after(failures)
    return at if at > now else None
