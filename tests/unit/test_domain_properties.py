"""Property tests of the pure campaign domain: the plan's P1-P5 and the state machines.

The plan (seed 000, tasks 5.1/5.2) names five correctness properties; each has a test named
after it here (P4 needs a database and lives in ``tests/integration/test_properties_db.py``).
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relance.campaigns.domain import (
    CAMPAIGN_TRANSITIONS,
    FINAL_RECIPIENT_STATES,
    MESSAGE_STATUS_RANK,
    OPEN_RECIPIENT_STATES,
    RECIPIENT_TRANSITIONS,
    SCHEDULE_HORIZON,
    CampaignCounts,
    CampaignStatus,
    MessageStatus,
    RecipientState,
    can_transition,
    can_transition_campaign,
    failure_reason,
    is_complete,
    is_final,
    next_message_status,
    plan_formula_holds,
    recipient_state_after_message_1,
    schedule_in_range,
    status_after_check,
)

R = RecipientState
C = CampaignStatus
M = MessageStatus
T = TypeVar("T")
EXAMPLES = settings(max_examples=300, deadline=None)

FINAL_NAMES = sorted(s.value for s in FINAL_RECIPIENT_STATES)
OPEN_NAMES = sorted(s.value for s in OPEN_RECIPIENT_STATES)


def _counts(**kwargs: int) -> CampaignCounts:
    return CampaignCounts(**kwargs)


small = st.integers(min_value=0, max_value=50)


@st.composite
def final_only_counts(draw: st.DrawFn) -> CampaignCounts:
    """Every recipient final, at least one recipient."""
    values = {name: draw(small) for name in FINAL_NAMES}
    if sum(values.values()) == 0:
        values[draw(st.sampled_from(FINAL_NAMES))] = draw(st.integers(1, 50))
    m1 = draw(st.integers(0, sum(values.values())))
    return _counts(**values, message_1_sent=m1)


@st.composite
def counts_with_open(draw: st.DrawFn) -> CampaignCounts:
    """At least one recipient pending (queued/replied) or waiting for its window (R1.4)."""
    values = {name: draw(small) for name in [*FINAL_NAMES, *OPEN_NAMES]}
    if sum(values[n] for n in OPEN_NAMES) == 0:
        values[draw(st.sampled_from(OPEN_NAMES))] = draw(st.integers(1, 50))
    m1 = draw(st.integers(0, sum(values.values())))
    return _counts(**values, message_1_sent=m1)


# A pure model of what the engine does to one campaign's recipients, to produce only the
# count vectors the engine can reach (P5). Events mirror the services:
#   m1_ok / m1_fail: dispatch of Message 1 (sending.record_outcomes)
#   m1_late_fail: a ``failed`` status webhook for a Message 1 already sent (apply_status)
#   reply: record_interaction inside the window; expire: expire_windows
#   m2_ok / m2_fail: dispatch of Message 2; opt_out: a stop keyword
#   cancel: cancel_campaign; retry: retry_failed
EVENTS = ("m1_ok", "m1_fail", "m1_late_fail", "reply", "expire", "m2_ok", "m2_fail", "opt_out")


@dataclasses.dataclass
class ModelCampaign:
    states: list[RecipientState]
    has_message_2: bool
    status: CampaignStatus = C.SENDING
    # Recipients whose Message 1 went out: message_1_sent counts contacts, not sends (R2.3),
    # so a contact retried after its first Message 1 went out is counted once.
    m1_contacts: set[int] = dataclasses.field(default_factory=set)

    def counts(self) -> CampaignCounts:
        tally = {s.value: 0 for s in RecipientState}
        for s in self.states:
            tally[s.value] += 1
        return _counts(**tally, message_1_sent=len(self.m1_contacts))

    def move(self, i: int, old: Iterable[RecipientState], new: RecipientState) -> None:
        if self.states[i] in old:
            assert can_transition(self.states[i], new)
            self.states[i] = new

    def apply(self, event: str, i: int) -> None:
        if self.status == C.CANCELLED:
            return
        s = self.states[i]
        if event == "m1_ok" and s == R.QUEUED:
            self.m1_contacts.add(i)
            self.move(i, [R.QUEUED], recipient_state_after_message_1(self.has_message_2))
        elif event == "m1_fail":
            self.move(i, [R.QUEUED], R.FAILED)
        elif event == "m1_late_fail":
            self.move(i, [R.AWAITING_REPLY], R.FAILED)
        elif event == "reply":
            self.move(i, [R.AWAITING_REPLY], R.REPLIED)
        elif event == "expire":
            self.move(i, [R.AWAITING_REPLY], R.NO_INTERACTION)
        elif event == "m2_ok":
            self.move(i, [R.REPLIED], R.MESSAGE_2_SENT)
        elif event == "m2_fail":
            self.move(i, [R.REPLIED], R.FAILED)
        elif event == "opt_out":
            self.move(i, [R.QUEUED, R.AWAITING_REPLY, R.REPLIED], R.OPTED_OUT)
        if self.status in (C.SENDING, C.PAUSED):
            self.status = status_after_check(self.status, self.counts())

    def cancel(self) -> None:
        if self.status in (C.COMPLETED, C.CANCELLED):
            return
        for i in range(len(self.states)):
            self.move(i, OPEN_RECIPIENT_STATES, R.CANCELLED)
        self.status = C.CANCELLED

    def retry(self) -> None:
        if self.status not in (C.SENDING, C.PAUSED, C.COMPLETED):
            return
        failed = [i for i, s in enumerate(self.states) if s == R.FAILED]
        for i in failed:
            self.move(i, [R.FAILED], R.QUEUED)
        if failed and self.status == C.COMPLETED:
            self.status = C.SENDING


@st.composite
def reachable_runs(draw: st.DrawFn) -> tuple[ModelCampaign, list[CampaignCounts]]:
    """A random run of the engine model and every count vector it went through."""
    n = draw(st.integers(1, 4))
    model = ModelCampaign([R.QUEUED] * n, has_message_2=draw(st.booleans()))
    seen = [model.counts()]
    steps = draw(
        st.lists(
            st.one_of(
                st.tuples(st.sampled_from(EVENTS), st.integers(0, n - 1)),
                st.tuples(st.sampled_from(["cancel", "retry"]), st.just(0)),
            ),
            max_size=60,
        )
    )
    for event, i in steps:
        if event == "cancel":
            model.cancel()
        elif event == "retry":
            model.retry()
        else:
            model.apply(event, i)
        seen.append(model.counts())
    return model, seen


# P1 -------------------------------------------------------------------------------------------


@EXAMPLES
@given(final_only_counts(), st.sampled_from([C.SENDING, C.PAUSED]))
def test_p1_all_contacts_finished_completes(counts: CampaignCounts, status: C) -> None:
    """P1 (R1.2, R2.2): every recipient final -> the status check completes the campaign."""
    assert counts.pending == 0 and counts.awaiting_reply == 0
    assert is_complete(counts)
    assert status_after_check(status, counts) == C.COMPLETED
    assert can_transition_campaign(status, C.COMPLETED)


@EXAMPLES
@given(reachable_runs())
def test_p1_engine_model_completes_exactly_when_all_finished(
    run: tuple[ModelCampaign, list[CampaignCounts]],
) -> None:
    """P1 on reachable runs: the campaign is completed iff every recipient is final."""
    model, _ = run
    all_final = all(is_final(s) for s in model.states)
    if model.status != C.CANCELLED:
        assert (model.status == C.COMPLETED) == all_final


# P2 -------------------------------------------------------------------------------------------


@EXAMPLES
@given(counts_with_open(), st.sampled_from([C.SENDING, C.PAUSED]))
def test_p2_pending_or_open_window_keeps_sending(counts: CampaignCounts, status: C) -> None:
    """P2 (R1.4): a pending message or an open reply window prevents completion."""
    assert not is_complete(counts)
    assert not plan_formula_holds(counts)
    assert status_after_check(status, counts) == status


# P3 -------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CampaignRecord:
    """The two fields R1.3 ties together, as the service writes them."""

    status: CampaignStatus
    completed_at: float | None


def run_status_check(record: CampaignRecord, counts: CampaignCounts, now: float) -> CampaignRecord:
    """``update_campaign_status`` reduced to its pure effect: a move to completed stamps now."""
    target = status_after_check(record.status, counts)
    if target == record.status:
        return record
    assert target == C.COMPLETED  # the check never moves a campaign anywhere else
    return CampaignRecord(target, now)


@EXAMPLES
@given(
    st.lists(st.one_of(final_only_counts(), counts_with_open()), min_size=1, max_size=20),
    st.sampled_from(list(CampaignStatus)),
)
def test_p3_completed_has_completed_at(counts_seq: list[CampaignCounts], start: C) -> None:
    """P3 (R1.3): a campaign the status check completes has completed_at, and keeps it.

    The check only ever moves sending/paused to completed, never out of completed; so once
    stamped, later checks (with any counts) neither clear nor move the timestamp.
    """
    record = CampaignRecord(start, 0.0 if start == C.COMPLETED else None)
    for now, counts in enumerate(counts_seq, start=1):
        before = record
        record = run_status_check(record, counts, float(now))
        if before.status != C.COMPLETED and record.status == C.COMPLETED:
            assert record.completed_at == float(now)
            assert can_transition_campaign(before.status, C.COMPLETED)
        if record.status == C.COMPLETED:
            assert record.completed_at is not None
        if before.status == C.COMPLETED:
            assert record == before
        if before.status in (C.DRAFT, C.SCHEDULED, C.CANCELLED):
            assert record == before


# P5 -------------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(reachable_runs())
def test_p5_counts_add_up(run: tuple[ModelCampaign, list[CampaignCounts]]) -> None:
    """P5 (R2.3): at completion every contact is in exactly one final bucket, none lost.

    message_2_sent + no_interaction + failed + opted_out + cancelled + done == total, and
    every contact that was sent Message 1 is accounted for. The plan's own formula
    (``plan_formula_holds``) agrees with ``is_complete`` on every reachable count vector.
    """
    model, seen = run
    for counts in seen:
        assert counts.total == len(model.states)
        assert plan_formula_holds(counts) == is_complete(counts), counts
    final = model.counts()
    if is_complete(final):
        buckets = (
            final.message_2_sent
            + final.no_interaction
            + final.failed
            + final.opted_out
            + final.cancelled
            + final.done
        )
        assert buckets == final.total == len(model.states)
        assert len(model.m1_contacts) <= buckets


def test_p5_retried_contact_is_counted_once() -> None:
    """R2.3 regression: M1 sent, M2 failed, retry_failed, M1 sent again, window closes."""
    model = ModelCampaign([R.QUEUED, R.QUEUED], has_message_2=True)
    for event, i in [("m1_ok", 0), ("m1_fail", 1), ("reply", 0), ("m2_fail", 0)]:
        model.apply(event, i)
    assert model.status == C.COMPLETED
    model.retry()
    for event, i in [("m1_ok", 0), ("m1_ok", 1), ("expire", 0), ("expire", 1)]:
        model.apply(event, i)
    counts = model.counts()
    assert model.status == C.COMPLETED
    assert counts.message_1_sent == 2 == counts.no_interaction
    assert plan_formula_holds(counts) and is_complete(counts)


@EXAMPLES
@given(final_only_counts())
def test_p5_plan_formula_on_finished_vectors(counts: CampaignCounts) -> None:
    """P5: on any all-final vector where message_1_sent <= total, both rules say complete."""
    assert plan_formula_holds(counts) == is_complete(counts) is True


@EXAMPLES
@given(counts_with_open())
def test_p5_plan_formula_on_open_vectors(counts: CampaignCounts) -> None:
    assert plan_formula_holds(counts) == is_complete(counts) is False


def test_p5_empty_campaign_is_not_complete() -> None:
    """A campaign with no recipient never completes (launch refuses an empty audience)."""
    assert not is_complete(CampaignCounts())


# Transition tables ----------------------------------------------------------------------------


def _reachable(start: T, graph: dict[T, frozenset[T]]) -> set[T]:
    seen = {start}
    todo = deque([start])
    while todo:
        for nxt in graph[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_recipient_final_states_have_no_exit_but_retry_and_a_late_failure() -> None:
    for state in FINAL_RECIPIENT_STATES:
        exits = RECIPIENT_TRANSITIONS[state]
        if state == R.FAILED:
            assert exits == {R.QUEUED}  # retry-failed only
        elif state in (R.MESSAGE_2_SENT, R.DONE):
            # A sent message reported failed afterwards: from final to final, so a campaign
            # never reopens for it.
            assert exits == {R.FAILED}, state
            assert all(is_final(s) for s in exits)
        else:
            assert exits == frozenset(), state


def test_a_failure_reason_says_what_it_means_before_the_providers_words() -> None:
    assert failure_reason("131026", "Message Undeliverable") == "131026: Message Undeliverable"
    limited = failure_reason("131049", "(#131049) This message was not delivered", "limited")
    assert limited.startswith("limited by Meta")
    assert limited.endswith("(131049: (#131049) This message was not delivered)")
    assert "template is needed" in failure_reason("131047", "Re-engagement", "needs_template")


def test_every_recipient_state_reachable_from_queued() -> None:
    assert _reachable(R.QUEUED, RECIPIENT_TRANSITIONS) == set(RecipientState)


def test_every_open_recipient_state_can_finish() -> None:
    for state in OPEN_RECIPIENT_STATES:
        assert any(is_final(s) for s in RECIPIENT_TRANSITIONS[state]), state


def test_recipient_state_machine_has_no_self_loops() -> None:
    for state, exits in RECIPIENT_TRANSITIONS.items():
        assert state not in exits


def test_campaign_transitions() -> None:
    assert _reachable(C.DRAFT, CAMPAIGN_TRANSITIONS) == set(CampaignStatus)
    assert CAMPAIGN_TRANSITIONS[C.CANCELLED] == frozenset()
    assert CAMPAIGN_TRANSITIONS[C.COMPLETED] == {C.SENDING}  # retry-failed only
    assert C.COMPLETED in CAMPAIGN_TRANSITIONS[C.SENDING]
    assert C.COMPLETED in CAMPAIGN_TRANSITIONS[C.PAUSED]


@EXAMPLES
@given(st.sampled_from(list(CampaignStatus)), final_only_counts() | counts_with_open())
def test_status_check_only_moves_along_allowed_transitions(
    status: C, counts: CampaignCounts
) -> None:
    target = status_after_check(status, counts)
    assert target == status or can_transition_campaign(status, target)
    assert status_after_check(target, counts) == target  # idempotent


# Message statuses -----------------------------------------------------------------------------

message_statuses = st.sampled_from(list(MessageStatus))
reported_statuses = st.sampled_from([M.SENT, M.DELIVERED, M.READ, M.FAILED])


def fold(start: MessageStatus, reports: Iterable[MessageStatus]) -> MessageStatus:
    current = start
    for reported in reports:
        nxt = next_message_status(current, reported)
        if nxt is not None:
            current = nxt
    return current


@EXAMPLES
@given(message_statuses, message_statuses)
def test_message_status_never_moves_backwards(current: M, reported: M) -> None:
    nxt = next_message_status(current, reported)
    if nxt is not None:
        assert MESSAGE_STATUS_RANK[nxt] > MESSAGE_STATUS_RANK[current]
        assert nxt == reported
    if current in (M.FAILED, M.PENDING):
        assert nxt is None


@EXAMPLES
@given(message_statuses, message_statuses)
def test_message_status_duplicate_changes_nothing(current: M, reported: M) -> None:
    once = fold(current, [reported])
    assert next_message_status(once, reported) is None
    assert fold(current, [reported, reported]) == once


@EXAMPLES
@given(
    st.sampled_from([M.SENDING, M.SENT, M.DELIVERED, M.READ]),
    st.lists(reported_statuses, min_size=1, max_size=8),
    st.randoms(use_true_random=False),
)
def test_message_status_any_order_ends_at_the_highest(
    start: M, reports: list[M], rnd: random.Random
) -> None:
    """Late, duplicated, out-of-order reports end in the max-rank status, whatever the order."""
    shuffled = list(reports)
    rnd.shuffle(shuffled)
    expected = max([start, *reports], key=MESSAGE_STATUS_RANK.__getitem__)
    assert fold(start, reports) == expected
    assert fold(start, shuffled) == expected
    assert fold(start, sorted(reports, key=MESSAGE_STATUS_RANK.__getitem__)) == expected


@EXAMPLES
@given(st.lists(reported_statuses, max_size=8))
def test_pending_message_ignores_reports(reports: list[M]) -> None:
    """A report can never concern a message not yet claimed: pending stays pending."""
    assert fold(M.PENDING, reports) == M.PENDING


NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@EXAMPLES
@given(st.datetimes(), st.one_of(st.none(), OFFSETS))
def test_a_schedule_is_a_utc_instant_near_now_or_refused(
    naive: datetime, tz: timezone | None
) -> None:
    """Any date-time, any offset (naive means UTC): either the same instant in UTC within the
    horizon, or a ValueError; never an OverflowError (a 500 once stored)."""
    at = naive.replace(tzinfo=tz)
    try:
        utc = schedule_in_range(at, NOW)
    except ValueError:
        return
    assert utc.utcoffset() == timedelta(0)
    assert utc == (at if tz else at.replace(tzinfo=UTC))
    assert abs(utc - NOW) <= SCHEDULE_HORIZON


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0001-01-01T00:00:00+14:00", "out of range"),
        ("9999-12-31T23:59:59-14:00", "out of range"),
        ("2999-01-01T00:00:00+00:00", "within 366 days"),
        ("1999-01-01T00:00:00+00:00", "within 366 days"),
    ],
)
def test_a_schedule_that_overflows_or_lies_absurdly_far_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        schedule_in_range(datetime.fromisoformat(text), NOW)
    assert schedule_in_range(NOW + timedelta(days=30), NOW) == NOW + timedelta(days=30)
