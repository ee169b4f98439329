"""The senders' pure rules: spreading recipients, Meta's messaging limit, quality signals."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relance.senders.domain import (
    PERSON,
    WINDOW,
    after_signal,
    messaging_room,
    sender_at,
    signal_of,
)

T0 = datetime(2026, 12, 1, tzinfo=UTC)
shares_st = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(1, 50)), st.integers(1, 5)),
    min_size=1,
    max_size=5,
    unique_by=lambda s: s[0],
)


@settings(max_examples=200)
@given(shares=shares_st, cycles=st.integers(1, 20), extra=st.integers(0, 30))
def test_each_sender_gets_its_weight_per_cycle(
    shares: list[tuple[int | None, int]], cycles: int, extra: int
) -> None:
    total = sum(w for _, w in shares)
    n = cycles * total + extra % total
    got = Counter(sender_at(p, shares) for p in range(n))
    for sender, weight in shares:
        # Exact over whole cycles; the partial cycle adds at most the sender's weight.
        assert cycles * weight <= got[sender] <= (cycles + 1) * weight
    assert sum(got.values()) == n
    assert [sender_at(p, shares) for p in range(n)] == [sender_at(p, shares) for p in range(n)]


def test_no_sender_or_a_zero_weight_is_refused() -> None:
    with pytest.raises(ValueError):
        sender_at(0, [])
    with pytest.raises(ValueError):
        sender_at(0, [(1, 0)])


# An interleaving: each step waits a while, then one Message 1 to a new user (held by the
# limit) or one Message 2 (a reply answered: never held).
steps_st = st.lists(
    st.tuples(st.sampled_from(["m1", "m2"]), st.integers(0, 6 * 3600)), min_size=1, max_size=120
)


@settings(max_examples=300)
@given(limit=st.integers(1, 12), steps=steps_st)
def test_the_moving_24h_count_never_exceeds_the_limit_and_message_2s_never_wait(
    limit: int, steps: list[tuple[str, int]]
) -> None:
    now = T0
    opened: list[datetime] = []  # when each counted user got its Message 1
    m2_sent = m2_wanted = 0
    for kind, wait in steps:
        now += timedelta(seconds=wait)
        if kind == "m2":
            m2_wanted += 1
            m2_sent += 1  # a Message 2 never asks the limit: nothing holds it
            continue
        room = messaging_room(limit, opened, now)
        if room.room > 0:
            opened.append(now)
            assert room.resumes_at is None
        else:
            # Held: room opens exactly when the oldest counted user leaves the window.
            assert room.resumes_at is not None and room.resumes_at > now
            assert messaging_room(limit, opened, room.resumes_at).room >= 1
            just_before = room.resumes_at - timedelta(microseconds=1)
            assert messaging_room(limit, opened, just_before).room == 0
        in_window = [at for at in opened if at > now - WINDOW]
        assert len(in_window) <= limit
    assert m2_sent == m2_wanted


def test_no_limit_leaves_room() -> None:
    assert messaging_room(0, [T0] * 10_000, T0).room > 10_000


def test_signals_from_metas_events() -> None:
    assert signal_of("quality", "FLAGGED", "") == "flagged"
    assert signal_of("quality", "UNFLAGGED", "") == "unflagged"
    assert signal_of("quality", "DOWNGRADE", "") is None  # a limit change only
    assert signal_of("account", "ACCOUNT_RESTRICTION", "RESTRICTED_BIZ_INITIATED_MESSAGING") == (
        "restricted"
    )
    assert signal_of("account", "ACCOUNT_RESTRICTION", "") == "restored"
    assert signal_of("account", "DISABLED_UPDATE", "DISABLE") == "restricted"
    assert signal_of("account", "DISABLED_UPDATE", "REINSTATE") == "restored"
    assert signal_of("account", "ACCOUNT_VIOLATION", "SCAM") == "flagged"
    assert signal_of("account", "PARTNER_ADDED", "") is None


def test_red_slows_or_pauses_a_restriction_stops_and_only_its_lifting_restarts() -> None:
    slowed = after_signal("active", None, "flagged", "", "slow")
    assert slowed.status == "slowed" and slowed.reason == "flagged by Meta"
    assert after_signal("active", None, "red", "", "pause").status == "paused"
    assert after_signal("slowed", "x", "unflagged", "", "slow").status == "active"
    stopped = after_signal(
        "slowed", "x", "restricted", "RESTRICTED_ADD_PHONE_NUMBER_ACTION", "slow"
    )
    assert stopped.status == "stopped" and "RESTRICTED_ADD" in (stopped.reason or "")
    assert after_signal("stopped", "r", "unflagged", "", "slow") == stopped.__class__(
        "stopped", "r"
    )
    assert after_signal("stopped", "r", "restored", "", "slow").status == "active"
    # A person's pause is theirs to lift.
    assert after_signal("paused", PERSON, "unflagged", "", "slow").status == "paused"
    assert after_signal("paused", PERSON, "restricted", "", "slow").status == "stopped"
