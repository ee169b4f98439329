"""Anti-ban pacing (SPEC 3): whatever the requests, the granted send times keep every rule.

Random rules, random request times (with clock skew between workers, long idle gaps, day
changes and DST transitions), random ``max_wait`` and provider rate-limit blocks are fed
through the pure ``reserve``; the grants it hands out are then checked against the rules.
"""

from __future__ import annotations

import itertools
import zoneinfo
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from relance.pacing.domain import (
    Grant,
    PacingRules,
    PacingState,
    Wait,
    block,
    last_send_at,
    local_day,
    next_midnight,
    reserve,
)

ZONES = (
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "Pacific/Chatham",  # +12:45 / +13:45
)


def _transitions(zone: str, year: int = 2024) -> list[float]:
    """Epoch seconds of the UTC-offset changes of ``zone`` in ``year`` (hourly scan)."""
    tz = zoneinfo.ZoneInfo(zone)
    out: list[float] = []
    t = datetime(year, 1, 1, tzinfo=UTC)
    prev = t.astimezone(tz).utcoffset()
    while t.year == year:
        t += timedelta(hours=1)
        off = t.astimezone(tz).utcoffset()
        if off != prev:
            out.append(t.timestamp())
        prev = off
    return out


# Interesting starting points: DST changes, local midnights, and plain days.
STARTS = sorted(
    {t for z in ZONES for t in _transitions(z)}
    | {datetime(2024, 3, 30, 23, 0, tzinfo=UTC).timestamp(), 1_700_000_000.0}
)


@dataclass(frozen=True)
class Request:
    dt: float  # seconds since the previous request (negative: another worker's late clock)
    max_wait: float
    wanted: int
    block_for: float | None  # a provider rate limit arrives first, blocking this long


rules_strategy = st.builds(
    PacingRules,
    send_delay=st.sampled_from([0.0, 0.0, 0.05, 1.0, 5.0, 6.5]),
    batch_size=st.integers(1, 12),
    batch_pause=st.sampled_from([0.0, 0.0, 2.0, 60.0, 600.0]),
    daily_quota=st.sampled_from([0, 0, 1, 3, 10, 40]),
    max_per_second=st.sampled_from([0.0, 0.0, 1.0, 80.0]),
    timezone=st.sampled_from(ZONES),
)

request_strategy = st.builds(
    Request,
    dt=st.one_of(
        st.floats(min_value=-0.5, max_value=0.0),
        st.floats(min_value=0.0, max_value=10.0),
        st.sampled_from([60.0, 3600.0, 6 * 3600.0, 86_400.0]),
    ),
    max_wait=st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=120.0)),
    wanted=st.integers(1, 30),
    block_for=st.one_of(st.none(), st.none(), st.none(), st.floats(0.0, 300.0)),
)


@dataclass(frozen=True)
class Granted:
    at: float
    count: int
    now: float
    max_wait: float
    blocked_until: float


def run(
    rules: PacingRules, start: float, requests: list[Request]
) -> tuple[list[Granted], list[tuple[Wait, float]]]:
    state = PacingState()
    now = start
    grants: list[Granted] = []
    waits: list[tuple[Wait, float]] = []
    for req in requests:
        now += req.dt
        if req.block_for is not None:
            state = block(state, now + req.block_for)
        decision, new_state = reserve(state, rules, now, req.max_wait, req.wanted)
        if isinstance(decision, Grant):
            grants.append(
                Granted(decision.at, decision.count, now, req.max_wait, state.blocked_until)
            )
            assert decision.count >= 1
            assert decision.count <= (req.wanted if rules.interval == 0 else 1)
        else:
            assert new_state == state  # a refusal reserves nothing
            waits.append((decision, now))
        state = new_state
    return grants, waits


def sends(grants: list[Granted]) -> list[float]:
    """One time per granted send (a grant of n sends n messages at ``at``)."""
    return [g.at for g in grants for _ in range(g.count)]


PROPS = settings(max_examples=400, deadline=None)
scenario = (rules_strategy, st.sampled_from(STARTS), st.lists(request_strategy, max_size=80))


@PROPS
@given(*scenario)
def test_grants_are_spaced_by_the_interval(
    rules: PacingRules, start: float, requests: list[Request]
) -> None:
    """Two sends of one sender are at least ``interval`` apart (SEND_DELAY / max per second)."""
    grants, _ = run(rules, start, requests)
    for a, b in itertools.pairwise(grants):
        assert b.at >= a.at  # time never runs backwards for one sender
        if rules.interval > 0:
            assert b.at >= a.at + rules.interval, (a, b, rules)


@PROPS
@given(*scenario)
def test_every_batch_is_followed_by_its_pause(
    rules: PacingRules, start: float, requests: list[Request]
) -> None:
    """After every ``batch_size`` sends comes a gap of at least ``batch_pause``."""
    times = sends(run(rules, start, requests)[0])
    for k in range(rules.batch_size, len(times), rules.batch_size):
        assert times[k] >= times[k - 1] + rules.batch_pause, (k, times[k - 1], times[k])
    # A grant never straddles a batch boundary: sends granted together share one time.
    for k in range(rules.batch_size, len(times), rules.batch_size):
        if rules.batch_pause > 0:
            assert times[k] > times[k - 1]


@PROPS
@given(*scenario)
def test_daily_quota_per_local_day(
    rules: PacingRules, start: float, requests: list[Request]
) -> None:
    """At most ``daily_quota`` sends per local day of the configured time zone."""
    grants, waits = run(rules, start, requests)
    if rules.daily_quota:
        per_day = Counter(local_day(t, rules.timezone) for t in sends(grants))
        assert max(per_day.values(), default=0) <= rules.daily_quota, per_day
    for wait, now in waits:
        if wait.reason == "daily_quota":
            # The quota wait ends at the next local midnight, on a later local day.
            assert wait.until > now
            day_before = local_day(wait.until - 1e-3, rules.timezone)
            assert local_day(wait.until, rules.timezone) > day_before


@PROPS
@given(*scenario)
def test_nothing_before_blocked_until_nor_beyond_max_wait(
    rules: PacingRules, start: float, requests: list[Request]
) -> None:
    """A rate limit blocks the sender (no grant before ``blocked_until``); a grant never lies
    more than ``max_wait`` ahead of its request, nor before it."""
    grants, waits = run(rules, start, requests)
    for g in grants:
        assert g.at >= g.blocked_until
        assert g.now <= g.at <= g.now + g.max_wait
    for wait, now in waits:
        assert wait.until > now or wait.reason == "daily_quota"


@PROPS
@given(rules_strategy, st.sampled_from(STARTS), st.integers(1, 200))
def test_an_eager_sender_gets_everything_it_is_owed(
    rules: PacingRules, start: float, n: int
) -> None:
    """Liveness: a worker that always comes back when told gets every send, at the earliest
    time the rules allow (no rule holds it back for nothing)."""
    state = PacingState()
    now = start
    got = 0
    last: float | None = None
    for _ in range(10 * n + 10):
        if got >= n:
            break
        decision, state = reserve(state, rules, now, max_wait=0.0, wanted=n - got)
        if isinstance(decision, Grant):
            assert decision.at == now
            if last is not None and rules.unpaced and not rules.daily_quota:
                assert decision.at == last  # nothing paces an unpaced sender
            got += decision.count
            last = decision.at
        else:
            assert decision.until > now
            now = decision.until
    assert got == n


def test_next_midnight_is_the_start_of_the_next_local_day() -> None:
    for zone in ZONES:
        for t in STARTS:
            midnight = next_midnight(t, zone)
            assert midnight > t
            assert local_day(midnight, zone) > local_day(t, zone)
            assert local_day(midnight - 1, zone) == local_day(t, zone) or midnight - t <= 3600


@settings(max_examples=150, deadline=None)
@given(
    st.floats(0, 10),
    st.integers(1, 10),
    st.floats(0, 120),
    st.integers(0, 30),
    st.integers(1, 80),
    st.floats(0, 86400 * 2),
)
def test_last_send_at_is_when_reserve_grants_the_last_send(
    delay: float, batch: int, pause: float, quota: int, sends: int, offset: float
) -> None:
    """The closed form agrees with granting the sends one by one (a tolerance for floats)."""
    rules = PacingRules(delay, batch, pause, daily_quota=quota)
    now = 1_765_000_000.0 + offset
    state = PacingState()
    expected = now
    clock = now
    for _ in range(sends):
        while True:
            outcome, new_state = reserve(state, rules, clock, max_wait=10**9)
            if isinstance(outcome, Grant):
                state, expected = new_state, outcome.at
                break
            clock = outcome.until  # a quota wait: the day after
    assert abs(last_send_at(PacingState(), rules, now, sends) - expected) < 1e-3
