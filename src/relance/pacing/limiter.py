"""The shared limiter: one pacing state per sender, updated atomically by every worker.

Redis in production (WATCH/MULTI optimistic transaction around the pure ``reserve``), a database
row otherwise (row lock on PostgreSQL, the single writer lock on SQLite). When the store is
unreachable the limiter raises ``LimiterUnavailable``: callers stop sending and try later.
It never fails open.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.config import Settings
from relance.db import conflict_insert, session_scope
from relance.models import SenderPacing
from relance.pacing.domain import (
    Grant,
    PacingRules,
    PacingState,
    Wait,
    block,
    must_wait,
    refund,
    reserve,
)


class LimiterUnavailable(Exception):
    """The pacing store cannot be reached: nothing may be sent until it can."""


def rules_from(settings: Settings) -> PacingRules:
    return PacingRules(
        send_delay=settings.send_delay_seconds,
        batch_size=settings.batch_size,
        batch_pause=settings.batch_pause_seconds,
        daily_quota=settings.daily_quota,
        max_per_second=settings.max_sends_per_second,
        timezone=settings.pacing_timezone,
    )


Update = Callable[[PacingState], tuple[Grant | Wait | None, PacingState]]


class _Operations:
    rules: PacingRules

    def _update(self, fn: Update) -> Grant | Wait | None:
        raise NotImplementedError

    def reserve(self, max_wait: float, wanted: int = 1, now: float | None = None) -> Grant | Wait:
        at = time.time() if now is None else now
        decision = self._update(lambda s: reserve(s, self.rules, at, max_wait, wanted))
        assert decision is not None
        return decision

    def peek(self, max_wait: float, now: float | None = None) -> Wait | None:
        """Must a send wait beyond ``max_wait``? Reads the state, reserves nothing (raises
        LimiterUnavailable like ``reserve``): a dispatcher asks before it claims."""
        at = time.time() if now is None else now
        return must_wait(self.state(), self.rules, at, max_wait)

    def state(self, session: Session | None = None) -> PacingState:
        raise NotImplementedError

    def refund(self, unused: int) -> None:
        if unused > 0:
            self._update(lambda s: (None, refund(s, unused)))

    def block(self, until: float) -> None:
        self._update(lambda s: (None, block(s, until)))


class RedisLimiter(_Operations):
    def __init__(self, url: str, sender: str, rules: PacingRules) -> None:
        import redis

        self.rules = rules
        self.url = url
        self.key = f"relance:pacing:{sender}"
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    def for_sender(self, sender: str, rules: PacingRules) -> RedisLimiter:
        """Another sender's limiter on the same Redis (its connections shared)."""
        other = RedisLimiter.__new__(RedisLimiter)
        other.rules, other.url, other._redis = rules, self.url, self._redis
        other.key = f"relance:pacing:{sender}"
        return other

    def _update(self, fn: Update) -> Grant | Wait | None:
        import redis

        try:
            with self._redis.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(self.key)
                        decision, new_state = fn(PacingState.loads(pipe.get(self.key)))
                        pipe.multi()
                        # Keep the state a few days: long enough to hold the daily quota window.
                        pipe.set(self.key, new_state.dumps(), ex=3 * 86400)
                        pipe.execute()
                        return decision
                    except redis.WatchError:
                        continue  # another worker reserved first: recompute on its result
        except redis.RedisError as exc:
            raise LimiterUnavailable(f"pacing store (Redis) unreachable: {exc}") from exc

    def state(self, session: Session | None = None) -> PacingState:
        import redis

        try:
            return PacingState.loads(self._redis.get(self.key))
        except redis.RedisError as exc:
            raise LimiterUnavailable(str(exc)) from exc


class DatabaseLimiter(_Operations):
    def __init__(self, settings: Settings, sender: str, rules: PacingRules) -> None:
        self.settings = settings
        self.sender = sender
        self.rules = rules

    def for_sender(self, sender: str, rules: PacingRules) -> DatabaseLimiter:
        return DatabaseLimiter(self.settings, sender, rules)

    def _update(self, fn: Update) -> Grant | Wait | None:
        try:
            with session_scope(self.settings) as session:
                session.execute(
                    conflict_insert(session, SenderPacing)
                    .values(sender=self.sender, state=PacingState().dumps(), version=0)
                    .on_conflict_do_nothing()
                )
                # FOR UPDATE serialises workers on PostgreSQL; SQLite's write lock already does.
                row = session.scalars(
                    select(SenderPacing).where(SenderPacing.sender == self.sender).with_for_update()
                ).one()
                decision, new_state = fn(PacingState.loads(row.state))
                row.state = new_state.dumps()
                row.version += 1
                row.blocked_until = new_state.blocked_until
                return decision
        except Exception as exc:
            raise LimiterUnavailable(f"pacing store (database) unavailable: {exc}") from exc

    def state(self, session: Session | None = None) -> PacingState:
        """Read the state; pass the caller's session (SQLite allows one transaction at a time)."""
        query = select(SenderPacing.state).where(SenderPacing.sender == self.sender)
        if session is not None:
            return PacingState.loads(session.scalar(query))
        with session_scope(self.settings) as own:
            return PacingState.loads(own.scalar(query))


AnyLimiter = RedisLimiter | DatabaseLimiter


def make_limiter(settings: Settings) -> AnyLimiter:
    rules = rules_from(settings)
    if settings.pacing_redis_url:
        return RedisLimiter(settings.pacing_redis_url, settings.sender_key, rules)
    return DatabaseLimiter(settings, settings.sender_key, rules)
