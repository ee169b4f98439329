"""What the Graph API says of a number, read and turned into sender changes (pure)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from relance.senders.domain import TIERS
from relance.senders.meta_reading import (
    LEVELS,
    QUALITIES,
    NumberReading,
    SenderState,
    portfolio_limit,
    read_number,
    sender_changes,
)

# Meta's documented answer to GET /{phone_number_id}?fields=whatsapp_business_manager_...
DOCUMENTED = {"whatsapp_business_manager_messaging_limit": "TIER_250", "id": "106540352242922"}
ACTIVE = SenderState("active", None, "UNKNOWN", None)


def test_meta_s_documented_answer_is_read() -> None:
    reading = read_number(DOCUMENTED)
    assert reading == NumberReading(tier="TIER_250")
    assert portfolio_limit(reading) == (True, 250)


def test_quality_and_throughput_are_read() -> None:
    body = {"quality_rating": "RED", "throughput": {"level": "HIGH"}, "id": "1"}
    assert read_number(body) == NumberReading(quality="RED", level="HIGH")


def test_unknown_or_missing_fields_change_nothing() -> None:
    body: dict[str, Any] = {
        "whatsapp_business_manager_messaging_limit": "TIER_5M",  # a tier Meta adds later
        "quality_rating": 3,
        "throughput": "HIGH",
        "id": "1",
    }
    reading = read_number(body)
    assert reading.empty
    assert portfolio_limit(reading) == (False, None)
    assert sender_changes(ACTIVE, reading, "slow") == {}


def test_unlimited_is_no_limit() -> None:
    body = {"whatsapp_business_manager_messaging_limit": "TIER_UNLIMITED"}
    assert portfolio_limit(read_number(body)) == (True, None)


def test_red_slows_or_pauses_and_green_lifts_it() -> None:
    red = NumberReading(quality="RED")
    slowed = sender_changes(ACTIVE, red, "slow")
    assert slowed["status"] == "slowed" and slowed["quality_rating"] == "RED"
    assert "quality red" in slowed["paused_reason"]
    assert sender_changes(ACTIVE, red, "pause")["status"] == "paused"
    now_red = SenderState("slowed", slowed["paused_reason"], "RED", None)
    assert sender_changes(now_red, NumberReading(quality="GREEN"), "slow") == {
        "quality_rating": "GREEN",
        "status": "active",
        "paused_reason": None,
    }


def test_a_rating_acts_when_it_changes_not_at_every_reading() -> None:
    """A person resumed a red number: the next hourly reading, still red, leaves it active."""
    resumed = SenderState("active", None, "RED", None)
    assert sender_changes(resumed, NumberReading(quality="RED"), "slow") == {}


def test_a_person_s_throughput_is_theirs() -> None:
    chosen = SenderState("active", None, "GREEN", 20.0)
    assert sender_changes(chosen, NumberReading(level="HIGH"), "slow") == {}
    upgraded = sender_changes(ACTIVE, NumberReading(level="HIGH"), "slow")
    assert upgraded == {"throughput_per_second": 1000.0}
    back = SenderState("active", None, "GREEN", 1000.0)
    assert sender_changes(back, NumberReading(level="STANDARD"), "slow") == {
        "throughput_per_second": None
    }


readings = st.builds(
    NumberReading,
    tier=st.sampled_from([None, *TIERS]),
    quality=st.sampled_from([None, *QUALITIES]),
    level=st.sampled_from([None, *LEVELS]),
)
states = st.builds(
    SenderState,
    status=st.sampled_from(["active", "slowed", "paused", "stopped"]),
    paused_reason=st.sampled_from([None, "paused by a person", "quality red: x", "Meta said"]),
    quality_rating=st.sampled_from(QUALITIES),
    throughput_per_second=st.sampled_from([None, 20.0, 1000.0]),
)


@given(states, readings, st.sampled_from(["slow", "pause"]))
def test_reading_the_same_answer_twice_changes_nothing_the_second_time(
    state: SenderState, reading: NumberReading, on_red: Any
) -> None:
    changes = sender_changes(state, reading, on_red)
    after = SenderState(
        changes.get("status", state.status),
        changes.get("paused_reason", state.paused_reason),
        changes.get("quality_rating", state.quality_rating),
        changes.get("throughput_per_second", state.throughput_per_second),
    )
    assert sender_changes(after, reading, on_red) == {}
    # A stopped sender (restricted account) never sends again because of a quality reading,
    # nor does a person's pause lift.
    if state.status == "stopped" or (state.status, state.paused_reason) == (
        "paused",
        "paused by a person",
    ):
        assert "status" not in changes
