"""A Hypothesis state machine that interleaves everything that can happen to a campaign.

Sends that succeed, fail for good, fail for now or hit a rate limit; replies (duplicated,
late, through the webhook); stop keywords; window sweeps before and after the windows close;
status checks; provider status webhooks late, duplicated and out of order; pause by the
provider, resume, cancel, retry_failed. After every step the machine checks the invariants
of SPEC 2 and the plan: counters equal a recount (R2.3), completed iff every recipient is final
(R1.2, R1.4) with completed_at set (R1.3), no message sent twice, no state moving backwards.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter, deque
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, update

from relance.campaigns import answers, claims, lifecycle, sweeps
from relance.campaigns.dispatch import dispatch
from relance.campaigns.domain import (
    FINAL_RECIPIENT_STATES,
    MESSAGE_STATUS_RANK,
    RECIPIENT_TRANSITIONS,
    MessageStatus,
    RecipientState,
    next_message_status,
)
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.inbound import Receiver, apply_events
from relance.campaigns.launch import launch_campaign
from relance.config import Settings
from relance.db import session_scope
from relance.errors import Conflict
from relance.models import Contact, Message, Recipient, utcnow
from relance.pacing.limiter import make_limiter
from relance.providers.base import (
    OutboundMessage,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
)
from relance.providers.events import InteractionEvent, ProviderEvent, StatusEvent
from relance.providers.failures import LIMITED_CODES
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    assert_message_1_rows,
    campaign_row,
    make_campaign,
    phone,
    seed_contacts,
)

R = RecipientState
FINAL = {s.value for s in FINAL_RECIPIENT_STATES}
OPEN = {s.value for s in RecipientState} - FINAL
_blocks = itertools.count(1)

# Times relative to now at which replies arrive and sweeps run: before any window closes,
# around a window's end (windows are 3600 s), and well after.
OFFSETS = st.sampled_from([None, 0.0, 1800.0, 3590.0, 3610.0, 7200.0])
ERRORS = (
    "permanent",
    "stops_sender",
    "retryable",
    "rate_limited",
    "limited",
    "stopped_marketing",
    "needs_template",
)
# What Meta may say of a message it had accepted: undeliverable, its per-user marketing limit,
# the contact stopped marketing messages, or no error at all.
FAILED_CODES = st.sampled_from([None, "131026", "131049", "131050"])


def _reachable(state: str) -> set[str]:
    seen = {state}
    todo = deque([R(state)])
    while todo:
        for nxt in RECIPIENT_TRANSITIONS[todo.popleft()]:
            if nxt.value not in seen:
                seen.add(nxt.value)
                todo.append(nxt)
    return seen


REACHABLE = {s.value: _reachable(s.value) for s in RecipientState}


def _error(kind: str) -> ProviderError:
    if kind == "permanent":
        return PermanentError("131026", "message undeliverable")
    if kind == "stops_sender":
        return PermanentError("190", "access token expired", stops_sender=True)
    if kind == "retryable":
        return RetryableError("503", "service unavailable")
    if kind == "limited":
        return PermanentError("131049", "healthy ecosystem engagement")
    if kind == "stopped_marketing":
        return PermanentError("131050", "stopped marketing messages")
    if kind == "needs_template":
        return PermanentError("131047", "re-engagement message")
    return RateLimited("130429", "rate limit hit", retry_after=0.001)


class CampaignMachine(RuleBasedStateMachine):
    settings: Settings  # set by the test, per database backend

    def __init__(self) -> None:
        super().__init__()
        self.base = next(_blocks) * 10 + 10_000_000
        self.n = 0
        self.cid = 0
        self.followups = RecordingFollowups()
        self.planned: dict[str, list[ProviderError]] = {}
        self.provider = FakeProvider(fail=self._fail, _ids=itertools.count(self.base * 1000))
        self.limiter = make_limiter(self.settings)
        self.used_keys: list[str] = []
        self.prev_states: dict[int, str] = {}
        self.prev_messages: dict[int, str] = {}
        self.retried: Counter[int] = Counter()  # recipient id -> retry_failed's new Message 1s

    def _fail(self, message: OutboundMessage) -> ProviderError | None:
        queue = self.planned.get(message.to)
        return queue.pop(0) if queue else None

    def phone_of(self, i: int) -> str:
        return phone(self.base + i)

    # Reading the database ----------------------------------------------------------------

    def failures(self) -> dict[int, tuple[str, str | None, str | None]]:
        """recipient id -> (state, last_error_code, last_error)."""
        with session_scope(self.settings) as session:
            rows = session.execute(
                select(
                    Recipient.id, Recipient.state, Recipient.last_error_code, Recipient.last_error
                ).where(Recipient.campaign_id == self.cid)
            ).all()
        return {rid: (state, code, error) for rid, state, code, error in rows}

    def recipients(self) -> dict[str, tuple[int, str, datetime | None]]:
        """phone -> (recipient id, state, window_closes_at)."""
        with session_scope(self.settings) as session:
            rows = session.execute(
                select(Contact.phone, Recipient.id, Recipient.state, Recipient.window_closes_at)
                .join(Contact, Contact.id == Recipient.contact_id)
                .where(Recipient.campaign_id == self.cid)
            ).all()
        return {ph: (rid, state, closes) for ph, rid, state, closes in rows}

    def messages(self) -> list[tuple[int, int, str, str, str | None]]:
        """(id, recipient id, kind, status, provider message id) of this campaign."""
        with session_scope(self.settings) as session:
            return [
                (m.id, m.recipient_id, m.kind, m.status, m.provider_message_id)
                for m in session.scalars(
                    select(Message).where(Message.campaign_id == self.cid).order_by(Message.id)
                )
            ]

    def status(self) -> str:
        return campaign_row(self.settings, self.cid).status

    # Setup ---------------------------------------------------------------------------------

    @initialize(
        n=st.integers(1, 5),
        has_m2=st.sampled_from([True, True, True, False]),
        fails=st.lists(st.tuples(st.integers(0, 4), st.sampled_from(ERRORS)), max_size=3),
    )
    def launch(self, n: int, has_m2: bool, fails: list[tuple[int, str]]) -> None:
        """A campaign over n contacts; the first sends to some of them will fail (``fails``:
        most runs reach their first dispatch soon, before ``provider_will_fail`` is drawn)."""
        self.n = n
        for i, kind in fails:
            self.provider_will_fail(i, kind)
        with session_scope(self.settings) as session:
            cat = seed_contacts(session, n, category=f"sm{self.base}", start=self.base)
            m2 = "Merci {first_name} !" if has_m2 else None
            self.cid = make_campaign(session, [cat], message_2=m2)
        with session_scope(self.settings) as session:
            launch_campaign(session, self.settings, self.followups, self.cid)
        assert self.messages() == []  # recipients only: each Message 1 is created when claimed

    # Provider behaviour --------------------------------------------------------------------

    @rule(i=st.integers(0, 4), kind=st.sampled_from(ERRORS))
    def provider_will_fail(self, i: int, kind: str) -> None:
        """The next send to contact i fails this way (one-shot)."""
        self.planned.setdefault(self.phone_of(i % self.n), []).append(_error(kind))

    @rule()
    def dispatch(self) -> None:
        started = utcnow()
        ids = [rid for rid, _, _ in self.recipients().values()]
        dispatch(
            self.settings,
            self.provider,
            self.limiter,
            self.followups,
            budget_seconds=20,
            recipient_ids=ids,
        )
        if self.status() == "sending":
            # Liveness: everything that was due when it started has been handed over: the
            # pending messages and the queued recipients whose Message 1 was not created yet.
            with session_scope(self.settings) as session:
                left = session.scalars(
                    select(Message.id).where(
                        Message.campaign_id == self.cid,
                        Message.status == "pending",
                        Message.next_attempt_at <= started,
                    )
                ).all()
                waiting = session.scalars(
                    select(Recipient.id).where(
                        Recipient.campaign_id == self.cid, *claims.message_1_due()
                    )
                ).all()
            assert left == [], "dispatch left due messages behind"
            assert waiting == [], "dispatch left recipients without their Message 1"

    @rule()
    def retry_delays_elapse(self) -> None:
        """Time passes: messages backing off after a transient error become due."""
        with session_scope(self.settings) as session:
            session.execute(
                update(Message)
                .where(Message.campaign_id == self.cid, Message.status == "pending")
                .values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )

    # Contacts ------------------------------------------------------------------------------

    @rule(i=st.integers(0, 4), offset=OFFSETS)
    def reply(self, i: int, offset: float | None) -> None:
        ph = self.phone_of(i % self.n)
        rid, before, closes = self.recipients()[ph]
        now = utcnow() if offset is None else utcnow() + timedelta(seconds=offset)
        with session_scope(self.settings) as session:
            applied = answers.record_interaction(
                session, self.settings, self.followups, ph, now=now
            )
            outcome, got = applied.outcome, applied.recipient_id
        assert got == rid
        after = self.recipients()[ph][1]
        in_window = before == "awaiting_reply" and closes is not None and closes > now
        if in_window:
            assert (outcome, after) == ("message_2_queued", "replied")
        else:
            assert outcome != "message_2_queued" and after == before, (outcome, before, after)

    @rule(i=st.integers(0, 4), reuse=st.booleans())
    def reply_via_webhook(self, i: int, reuse: bool) -> None:
        """A reply webhook, sometimes one already received (a provider retry)."""
        ph = self.phone_of(i % self.n)
        key = self.used_keys[-1] if reuse and self.used_keys else f"in:{uuid.uuid4().hex}"
        event = InteractionEvent(key, ph, "text", "Oui, merci", utcnow())
        before = self.recipients()[ph][1]
        tally = self._webhook([event])
        after = self.recipients()[ph][1]
        if key in self.used_keys:
            assert tally.get("duplicates") == 1 and after == before
        else:
            self.used_keys.append(key)
            assert after in (before, "replied")

    @rule(i=st.integers(0, 4), via_webhook=st.booleans())
    def stop_keyword(self, i: int, via_webhook: bool) -> None:
        ph = self.phone_of(i % self.n)
        rid, before, _ = self.recipients()[ph]
        if via_webhook:
            self._webhook(
                [InteractionEvent(f"in:{uuid.uuid4().hex}", ph, "text", "STOP", utcnow())]
            )
        else:
            with session_scope(self.settings) as session:
                answers.opt_out(session, ph)
        after = self.recipients()[ph][1]
        assert after == ("opted_out" if before in OPEN else before)
        pending = [m for m in self.messages() if m[1] == rid and m[3] == "pending"]
        assert pending == []  # an opted-out contact's unsent messages never go

    @rule(offset=OFFSETS)
    def windows_close(self, offset: float | None) -> None:
        now = utcnow() + timedelta(seconds=offset or 0.0)
        before = self.recipients()
        with session_scope(self.settings) as session:
            sweeps.expire_windows(session, now=now)
        after = self.recipients()
        for ph, (_, state, closes) in before.items():
            if state == "awaiting_reply" and closes is not None and closes <= now:
                assert after[ph][1] == "no_interaction"
            else:
                assert after[ph][1] == state

    # Provider status webhooks ----------------------------------------------------------------

    @rule(
        picks=st.lists(
            st.tuples(
                st.integers(0, 50),
                st.sampled_from(["sent", "delivered", "read", "failed"]),
                st.booleans(),
                FAILED_CODES,
            ),
            min_size=1,
            max_size=4,
        )
    )
    def status_webhook(self, picks: list[tuple[int, str, bool, str | None]]) -> None:
        """Statuses for sent messages, in any order, some already received; a ``failed`` one
        with one of Meta's codes, or none."""
        sent = [m for m in self.messages() if m[4] is not None]
        if not sent:
            return
        before = {m[0]: m[3] for m in sent}
        events: list[ProviderEvent] = []
        expected = dict(before)
        seen = set(self.used_keys)
        for k, status, reuse, code in picks:
            mid, _, _, _, pmid = sent[k % len(sent)]
            assert pmid is not None
            key = f"st:{pmid}:{status}" if reuse else f"st:{uuid.uuid4().hex}"
            error = {"error_code": code, "error_text": "reported"} if status == "failed" else {}
            events.append(
                StatusEvent(key, pmid, status, utcnow(), our_message_id=mid, **error)  # type: ignore[arg-type]
            )
            if key not in seen:
                seen.add(key)
                nxt = next_message_status(MessageStatus(expected[mid]), MessageStatus(status))
                expected[mid] = nxt.value if nxt is not None else expected[mid]
        self._webhook(events)
        self.used_keys.extend(e.dedup_key for e in events)
        after = {m[0]: m[3] for m in self.messages() if m[0] in before}
        assert after == expected, (events, before)

    def _webhook(self, events: list[ProviderEvent]) -> dict[str, int]:
        with session_scope(self.settings) as session:
            return apply_events(
                session, Receiver(self.settings, self.followups, "simulator"), events
            )

    # Campaign actions ------------------------------------------------------------------------

    @rule()
    def status_check(self) -> None:
        before = self.status()
        states = [s for _, s, _ in self.recipients().values()]
        with session_scope(self.settings) as session:
            result = sweeps.update_campaign_status(session, self.cid)
        if before in ("sending", "paused") and all(s in FINAL for s in states):
            assert result == "completed"
        else:
            assert result == before

    @rule()
    def resume(self) -> None:
        if self.status() != "paused":
            return
        with session_scope(self.settings) as session:
            lifecycle.resume_campaign(session, self.followups, self.cid)
        assert self.status() == "sending"

    @rule()
    def cancel(self) -> None:
        before = self.status()
        try:
            with session_scope(self.settings) as session:
                lifecycle.cancel_campaign(session, self.cid)
        except Conflict:
            assert before in ("completed", "cancelled")
            return
        assert before not in ("completed", "cancelled")
        c = campaign_row(self.settings, self.cid)
        assert c.status == "cancelled" and c.cancelled_at is not None
        assert all(s in FINAL for _, s, _ in self.recipients().values())
        assert not [m for m in self.messages() if m[3] == "pending"]
        before_dispatch = len(self.messages())
        self.dispatch()  # nothing of a cancelled campaign is claimed, nor created
        assert len(self.messages()) == before_dispatch

    @rule()
    def retry_limited(self) -> None:
        """retry-limited: only the recipients Meta held back (131049) get a new Message 1."""
        before = self.status()
        limited = [
            rid
            for rid, (state, code, _) in self.failures().items()
            if state == "failed" and code in LIMITED_CODES
        ]
        others = {rid for rid, (state, _, _) in self.failures().items() if state == "failed"}
        try:
            with session_scope(self.settings) as session:
                n = lifecycle.retry_failed(
                    session, self.settings, self.followups, self.cid, only_limited=True
                )
        except Conflict:
            assert before not in ("sending", "paused", "completed") or not limited
            return
        assert n == len(limited)
        self.retried.update(limited)
        after = self.failures()
        assert all(after[rid][0] == "queued" for rid in limited)
        assert all(after[rid][0] == "failed" for rid in others - set(limited))
        assert self.status() == ("sending" if before == "completed" else before)

    @rule()
    def retry_failed(self) -> None:
        before = self.status()
        failed = [ph for ph, (_, s, _) in self.recipients().items() if s == "failed"]
        try:
            with session_scope(self.settings) as session:
                n = lifecycle.retry_failed(session, self.settings, self.followups, self.cid)
        except Conflict:
            assert before not in ("sending", "paused", "completed") or not failed
            return
        assert n == len(failed)
        self.retried.update(self.recipients()[ph][0] for ph in failed)
        after = self.recipients()
        assert all(after[ph][1] == "queued" for ph in failed)
        assert self.status() == ("sending" if before == "completed" else before)

    # Invariants --------------------------------------------------------------------------------

    @invariant()
    def counters_equal_a_recount(self) -> None:
        if self.cid:
            assert_counters_match_rows(self.settings, self.cid)

    @invariant()
    def completed_iff_every_recipient_is_final(self) -> None:
        if not self.cid:
            return
        c = campaign_row(self.settings, self.cid)
        states = {ph: s for ph, (_, s, _) in self.recipients().items()}
        assert c.total == len(states) == self.n
        all_final = all(s in FINAL for s in states.values())
        if c.status in ("sending", "paused", "completed"):
            assert (c.status == "completed") == all_final, (c.status, states)
        if c.status == "completed":
            assert c.completed_at is not None  # R1.3
        if c.status == "cancelled":
            assert all_final
        if c.status == "sending":
            assert c.completed_at is None

    @invariant()
    def nothing_moves_backwards(self) -> None:
        if not self.cid:
            return
        states = {rid: s for rid, s, _ in self.recipients().values()}
        for rid, old in self.prev_states.items():
            new = states[rid]
            assert new in REACHABLE[old], f"recipient {rid}: {old} -> {new}"
            if old in FINAL:  # only by retry-failed, or a sent message reported failed
                assert new == old or R(new) in RECIPIENT_TRANSITIONS[R(old)], (old, new)
        self.prev_states = states
        messages = {m[0]: m[3] for m in self.messages()}
        assert "sending" not in messages.values()  # every claim was settled
        for mid, old in self.prev_messages.items():
            new = messages[mid]
            if old != "pending":
                assert (
                    MESSAGE_STATUS_RANK[MessageStatus(new)]
                    >= MESSAGE_STATUS_RANK[MessageStatus(old)]
                ), f"message {mid}: {old} -> {new}"
        self.prev_messages = messages

    @invariant()
    def every_failure_says_why(self) -> None:
        """A failed recipient keeps the provider's code and words, after the reason."""
        if not self.cid:
            return
        for state, code, error in self.failures().values():
            if state == "failed":
                assert code and error and f"{code}: " in error, (code, error)
            if code in LIMITED_CODES and state == "failed":
                assert error is not None and error.startswith("limited by Meta")

    @invariant()
    def no_duplicate_message_1(self) -> None:
        """One Message 1 row per recipient once claimed (none before), plus one per retry;
        never two in flight for one recipient."""
        if self.cid:
            assert_message_1_rows(self.settings, self.cid, self.retried)

    @invariant()
    def each_message_sent_at_most_once(self) -> None:
        if not self.cid:
            return
        sends = Counter(m.message_id for m in self.provider.sent)
        assert all(k == 1 for k in sends.values()), sends
        rows = self.messages()
        by_id = {m[0]: m for m in rows}
        per_recipient: Counter[tuple[int, str]] = Counter()
        for mid in sends:
            _, rid, kind, status, pmid = by_id[mid]
            assert pmid is not None and status != "pending"
            per_recipient[(rid, kind)] += 1
        rows_per: Counter[tuple[int, str]] = Counter((m[1], m[2]) for m in rows)
        for key, k in per_recipient.items():
            assert k <= rows_per[key]
        # One Message 2 per reply: never more Message 2 rows than Message 1 rows sent.
        m1_sent = Counter(m[1] for m in rows if m[2] == "message_1" and m[4] is not None)
        for (rid, kind), k in rows_per.items():
            if kind == "message_2":
                assert k <= m1_sent[rid]


@pytest.mark.parametrize("steps", [30])
def test_campaign_state_machine(settings: Settings, steps: int) -> None:
    CampaignMachine.settings = settings
    run_state_machine_as_test(
        CampaignMachine,
        settings=hsettings(
            max_examples=30,  # per database: CI must stay well under its 30 minutes
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )


def test_one_batch_with_two_statuses_of_one_message(settings: Settings) -> None:
    """Regression: [delivered, read] for one message in one webhook used to lose the read
    and count delivered twice (the second event saw the session's stale copy)."""
    machine_followups = RecordingFollowups()
    with session_scope(settings) as session:
        cat = seed_contacts(session, 2, category="batch", start=20_000_000)
        cid = make_campaign(session, [cat])
    with session_scope(settings) as session:
        launch_campaign(session, settings, machine_followups, cid)
    provider = FakeProvider()
    dispatch(settings, provider, make_limiter(settings), machine_followups, budget_seconds=10)
    with session_scope(settings) as session:
        pmids = list(
            session.scalars(select(Message.provider_message_id).where(Message.campaign_id == cid))
        )
    now = utcnow()
    a, b = pmids
    assert a is not None and b is not None
    events: list[ProviderEvent] = [
        StatusEvent("k1", a, "delivered", now),
        StatusEvent("k2", a, "read", now),
        StatusEvent("k3", b, "read", now),
        StatusEvent("k4", b, "delivered", now),  # late: ignored
    ]
    with session_scope(settings) as session:
        apply_events(session, Receiver(settings, machine_followups, "simulator"), events)
    with session_scope(settings) as session:
        statuses = sorted(session.scalars(select(Message.status)))
    assert statuses == ["read", "read"]
    c = campaign_row(settings, cid)
    assert (c.delivered, c.read) == (2, 2)
    assert_counters_match_rows(settings, cid)
