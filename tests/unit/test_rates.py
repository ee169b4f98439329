"""Rates, percentiles and the estimated finish (campaigns/rates.py): pure, property-tested."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from relance.campaigns.rates import Remaining, estimated_finish, percentile, rates, share
from relance.pacing.domain import PacingRules, PacingState, last_send_at

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
counts = st.integers(0, 10**6)


@given(counts, counts, counts, counts, counts)
def test_rates_are_shares_or_none(
    sent: int, delivered: int, read: int, replied: int, m2: int
) -> None:
    out = rates(sent, delivered, read, replied, m2)
    assert set(out) == {"delivery", "read", "reply", "message_2"}
    for name, value in out.items():
        whole = replied if name == "message_2" else sent
        assert (value is None) == (whole == 0)
        assert value is None or 0.0 <= value <= 1.0


def test_rates_say_what_they_divide() -> None:
    assert rates(20, 18, 10, 5, 4) == {
        "delivery": 0.9,
        "read": 0.5,
        "reply": 0.25,
        "message_2": 0.8,
    }
    assert share(1, 3) == 0.3333


@given(st.lists(st.floats(0, 10**6, allow_nan=False), min_size=1), st.floats(0.01, 1))
def test_a_percentile_is_a_value_with_enough_below_it(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values
    assert sum(v <= p for v in values) >= q * len(values) - 1e-9
    assert sum(v < p for v in values) < q * len(values) + 1e-9


def test_percentiles_of_nothing_and_of_a_few() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 11)], 0.9) == 9.0


def remaining(**over: object) -> Remaining:
    base: dict[str, object] = {
        "status": "sending",
        "message_1_left": 20,
        "open_recipients": 20,
        "last_message_1_sent_at": None,
        "reply_window_seconds": 3600,
        "has_message_2": True,
    }
    return Remaining(**{**base, **over})  # type: ignore[arg-type]


def test_twenty_contacts_at_five_seconds_end_after_the_last_window() -> None:
    """The issue's case: 20 contacts at 5 s pacing took 3.5 minutes with no hint."""
    rules = PacingRules(send_delay=5, batch_size=50, batch_pause=60)
    last = last_send_at(PacingState(), rules, NOW.timestamp(), 20)
    assert last - NOW.timestamp() == 95  # 19 gaps of 5 s
    ends = datetime.fromtimestamp(last, UTC)
    assert estimated_finish(remaining(), NOW, ends) == ends + timedelta(hours=1)
    assert estimated_finish(remaining(has_message_2=False), NOW, ends) == ends


def test_no_estimate_when_nothing_happens_by_itself() -> None:
    for status in ("draft", "paused", "completed", "cancelled", "scheduled"):
        assert estimated_finish(remaining(status=status), NOW, NOW) is None
    assert estimated_finish(remaining(open_recipients=0), NOW, NOW) is None


@given(st.integers(0, 3600), st.integers(0, 7200))
def test_all_sent_ends_when_the_last_window_closes(ago: int, window: int) -> None:
    sent = NOW - timedelta(seconds=ago)
    left = remaining(message_1_left=0, last_message_1_sent_at=sent, reply_window_seconds=window)
    assert estimated_finish(left, NOW, NOW) == max(NOW, sent + timedelta(seconds=window))


def test_a_quota_moves_the_rest_to_the_next_days() -> None:
    rules = PacingRules(send_delay=0, batch_size=50, batch_pause=0, daily_quota=1000)
    last = last_send_at(PacingState(), rules, NOW.timestamp(), 2500)
    assert datetime.fromtimestamp(last, UTC) == datetime(2026, 12, 8, tzinfo=UTC)
