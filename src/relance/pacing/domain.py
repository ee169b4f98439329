"""Anti-ban pacing arithmetic for one sender (one WhatsApp number). Pure: no I/O.

The shared limiter (Redis or a database row) stores a ``PacingState`` per sender and applies
``reserve`` atomically, so that every worker of every process draws from the same budget:

* two sends are at least ``interval`` apart (``max(SEND_DELAY_SECONDS, 1/MAX_SENDS_PER_SECOND)``);
* after every ``batch_size`` sends comes a pause of ``batch_pause`` seconds;
* at most ``daily_quota`` sends per local day of ``timezone`` (0: no quota);
* a rate-limit answer from the provider blocks the sender until ``blocked_until``.

With every rule off (interval 0, no pause, no quota) a reservation grants a whole batch at once.
"""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

WaitReason = Literal["delay", "batch_pause", "daily_quota", "rate_limited"]


@dataclass(frozen=True)
class PacingRules:
    send_delay: float
    batch_size: int
    batch_pause: float
    daily_quota: int = 0
    max_per_second: float = 0.0
    timezone: str = "UTC"

    @property
    def interval(self) -> float:
        ceiling = 1.0 / self.max_per_second if self.max_per_second > 0 else 0.0
        return max(self.send_delay, ceiling)

    @property
    def unpaced(self) -> bool:
        return self.interval == 0 and self.batch_pause == 0


@dataclass(frozen=True)
class PacingState:
    next_at: float = 0.0  # epoch seconds: the earliest time of the next grant
    batch_count: int = 0  # grants in the current batch
    day: str = ""  # local date of the quota window
    day_count: int = 0
    blocked_until: float = 0.0  # set by a provider rate limit
    pause_reason: str = "delay"

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def loads(cls, raw: str | bytes | None) -> PacingState:
        return cls(**json.loads(raw)) if raw else cls()


@dataclass(frozen=True)
class Grant:
    count: int
    at: float  # when the granted sends may go (<= now + max_wait)


@dataclass(frozen=True)
class Wait:
    until: float
    reason: WaitReason


def local_day(ts: float, tz: str) -> str:
    return datetime.fromtimestamp(ts, zoneinfo.ZoneInfo(tz)).date().isoformat()


def next_midnight(ts: float, tz: str) -> float:
    zone = zoneinfo.ZoneInfo(tz)
    local = datetime.fromtimestamp(ts, zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    return midnight.timestamp()


def reserve(
    state: PacingState, rules: PacingRules, now: float, max_wait: float, wanted: int = 1
) -> tuple[Grant | Wait, PacingState]:
    """Grant up to ``wanted`` sends at the earliest allowed time, or say how long to wait.

    A grant may lie up to ``max_wait`` seconds ahead: the caller sleeps until ``Grant.at``,
    while other workers get the slots after it. Nothing is granted beyond ``max_wait``.
    """
    waiting = must_wait(state, rules, now, max_wait)
    if waiting is not None:
        return waiting, state
    at = max(now, state.next_at, state.blocked_until)
    day, day_count = state.day, state.day_count
    if local_day(at, rules.timezone) != day:
        day, day_count = local_day(at, rules.timezone), 0

    count = 1 if rules.interval > 0 else max(1, wanted)
    if rules.batch_pause > 0:  # without a pause, a batch boundary changes nothing
        count = min(count, rules.batch_size - state.batch_count)
    if rules.daily_quota:
        count = min(count, rules.daily_quota - day_count)
    batch_count = state.batch_count + count
    next_at = at + rules.interval
    pause_reason = "delay"
    if batch_count >= rules.batch_size:
        batch_count = 0
        if rules.batch_pause > 0:
            next_at = at + max(rules.batch_pause, rules.interval)
            pause_reason = "batch_pause"
    new_state = replace(
        state,
        next_at=next_at,
        batch_count=batch_count,
        day=day,
        day_count=day_count + count,
        pause_reason=pause_reason,
    )
    return Grant(count, at), new_state


def must_wait(state: PacingState, rules: PacingRules, now: float, max_wait: float) -> Wait | None:
    """Why no send may be granted within ``max_wait`` (the daily quota, a rate limit, the
    pace), or None: what ``reserve`` checks first, asked without reserving."""
    at = max(now, state.next_at, state.blocked_until)
    day_count = state.day_count if local_day(at, rules.timezone) == state.day else 0
    if rules.daily_quota and day_count >= rules.daily_quota:
        return Wait(next_midnight(at, rules.timezone), "daily_quota")
    if at - now > max_wait:
        blocked = state.blocked_until >= at
        return Wait(at, "rate_limited" if blocked else _reason(state))
    return None


def _reason(state: PacingState) -> WaitReason:
    return "batch_pause" if state.pause_reason == "batch_pause" else "delay"


def refund(state: PacingState, unused: int) -> PacingState:
    """Give back granted sends that found nothing to send (unpaced mode only)."""
    return replace(state, day_count=max(0, state.day_count - unused))


def block(state: PacingState, until: float) -> PacingState:
    """A provider rate limit: no grant before ``until``."""
    return replace(state, blocked_until=max(state.blocked_until, until))


def last_send_at(state: PacingState, rules: PacingRules, now: float, sends: int) -> float:
    """When the last of ``sends`` more sends may go, by these rules, if nothing else shares the
    sender and the provider never slows it down: the estimate of a paced campaign's end.

    The same arithmetic as ``reserve`` granting one send after another, in closed form (a
    campaign may have a million sends left): the ``i``-th send of a day goes ``i`` intervals
    after the first, plus a pause in place of an interval at each batch boundary it crossed;
    when the daily quota is spent, sending goes on at the next midnight.
    """
    if sends <= 0:
        return now
    at = max(now, state.next_at, state.blocked_until)
    day_count = state.day_count if state.day == local_day(at, rules.timezone) else 0
    batch_count = state.batch_count
    extra = max(rules.batch_pause, rules.interval) - rules.interval if rules.batch_pause else 0.0
    while True:
        room = rules.daily_quota - day_count if rules.daily_quota else sends
        if room <= 0:
            at, day_count = next_midnight(at, rules.timezone), 0
            continue
        midnight = next_midnight(at, rules.timezone)

        def send_at(i: int, start: float = at, done: int = batch_count) -> float:
            """The ``i``-th send from ``start``: intervals, and a pause per batch crossed."""
            crossed = (done + i) // rules.batch_size if rules.batch_size > 0 else 0
            return start + i * rules.interval + crossed * extra

        # Today's sends: as many as the quota leaves, and as go before midnight (the day's
        # count starts again at midnight, quota spent or not).
        today = _sends_before(send_at, midnight, min(sends, room))
        end = send_at(today - 1)
        sends -= today
        if sends == 0:
            return end
        following = send_at(today)  # when the next one goes, the day's end aside
        batch_count = (batch_count + today) % rules.batch_size if rules.batch_size > 0 else 0
        # Quota spent: at midnight, or later if the gap after the last send runs past it.
        at = max(midnight, following) if today == room else following
        day_count = 0


def _sends_before(send_at: Callable[[int], float], deadline: float, most: int) -> int:
    """How many of the first ``most`` sends go before ``deadline`` (the first always does:
    ``send_at`` grows with its index)."""
    low, high = 1, most  # send_at(0) < deadline
    while low < high:
        middle = (low + high + 1) // 2
        if send_at(middle - 1) < deadline:
            low = middle
        else:
            high = middle - 1
    return low
