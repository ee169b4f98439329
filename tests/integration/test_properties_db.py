"""The plan's properties P1-P5 against the real services, on SQLite and on PostgreSQL.

Each Hypothesis example is a small campaign (1-6 contacts) where every contact is given a
fate (Message 1 fails, no reply, Message 2 sent, ...). The scenario drives the real services
(launch, dispatch, record_interaction, opt_out, status webhooks, retry_failed, expire_windows)
to those fates, then checks the property. Examples share one database per test: each uses
new phone numbers, category and provider message ids, so no cleanup is needed in between.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from relance.campaigns import answers, claims, counters, lifecycle, queries, sweeps
from relance.campaigns import repository as repo
from relance.campaigns.dispatch import claim
from relance.campaigns.domain import CampaignStatus, is_complete, plan_formula_holds
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.handover import send_all
from relance.campaigns.inbound import Receiver, apply_events
from relance.campaigns.launch import launch_campaign
from relance.campaigns.outcomes import SendOutcome, record_outcomes
from relance.config import Settings
from relance.db import session_scope
from relance.models import Campaign, Message, Recipient, utcnow
from relance.providers.base import OutboundMessage, PermanentError, ProviderError, RetryableError
from relance.providers.events import StatusEvent
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    assert_message_1_rows,
    later,
    make_campaign,
    phone,
    recipient_ids_of,
    run_dispatch,
    seed_contacts,
)

DB_EXAMPLES = hsettings(
    max_examples=60,  # per database: CI must stay well under its 30 minutes
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Fates that end in a final recipient state once the scenario has run.
# limited: Meta refuses Message 1 (131049); late_limited: Meta accepts it, then reports it
# failed with 131049 (after ``done`` too, without Message 2); m2_late_fail: Message 2 is sent,
# then reported failed.
FINAL_FATES_M2 = (
    "m1_fail",
    "no_reply",
    "m2_ok",
    "m2_fail",
    "opt_out",
    "late_fail",
    "retry",
    "limited",
    "late_limited",
    "m2_late_fail",
)
FINAL_FATES_M1_ONLY = ("m1_fail", "done", "opt_out", "retry", "limited", "late_limited")
# The fates that end failed, to be given a new Message 1 when the scenario retries.
FAILING_FATES = ("m1_fail", "m2_fail", "late_fail", "limited", "late_limited", "m2_late_fail")
# Fates that leave the recipient open (R1.4): a pending message or an open window.
OPEN_FATES = ("m1_retrying", "waiting", "replied_pending", "unsent")

_blocks = itertools.count(1)


def send_due(
    settings: Settings,
    provider: FakeProvider,
    followups: RecordingFollowups,
    ids: list[int] | None = None,
    recipient_ids: list[int] | None = None,
) -> None:
    """What ``dispatch`` does without its pacing loop: claim, send, record (2 transactions).

    ``ids``: these pending messages; ``recipient_ids``: what is due for these recipients (their
    Message 1, created by the claim, or a pending message). The pacing loop itself is
    exercised by test_engine_stateful and test_concurrency.
    """
    while messages := claim(settings, 100, ids, recipient_ids):
        outcomes = send_all(provider, messages)
        with session_scope(settings) as session:
            record_outcomes(session, settings, followups, outcomes)


def fresh_block() -> int:
    """A new range of phone numbers / provider ids for one example."""
    return next(_blocks) * 100


@dataclass
class Scenario:
    settings: Settings
    fates: list[str]
    has_message_2: bool
    base: int = field(default_factory=fresh_block)
    followups: RecordingFollowups = field(default_factory=RecordingFollowups)
    campaign_id: int = 0
    provider: FakeProvider = field(init=False)
    # One-shot provider errors: (phone, kind) -> error for the next send only.
    errors: dict[tuple[str, str], ProviderError] = field(default_factory=dict)
    # Errors for every send to that number (a provider that keeps failing).
    persistent: dict[tuple[str, str], ProviderError] = field(default_factory=dict)
    # The final state each fate must end in (checked by P5).
    expected: dict[int, str] = field(default_factory=dict)
    # Recipient id -> how many times retry_failed gave it a new Message 1.
    retried: Counter[int] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.provider = FakeProvider(fail=self._fail, _ids=itertools.count(self.base * 1000))

    def _fail(self, message: OutboundMessage) -> ProviderError | None:
        key = (message.to, message.kind)
        return self.errors.pop(key, None) or self.persistent.get(key)

    def phone_of(self, i: int) -> str:
        return phone(self.base + i)

    def who(self, *fates: str) -> list[int]:
        return [i for i, f in enumerate(self.fates) if f in fates]

    def step(self) -> None:
        """After every step: R1.3 holds (the counters are compared with a recount at the end)."""
        with session_scope(self.settings) as session:
            c = session.get_one(Campaign, self.campaign_id)
            if c.status == CampaignStatus.COMPLETED:
                assert c.completed_at is not None
                assert c.started_at is not None and c.completed_at >= c.started_at
            else:
                assert c.completed_at is None
        # No duplicate Message 1: one per recipient once claimed, plus one per retry.
        assert_message_1_rows(self.settings, self.campaign_id, self.retried)

    def recipient_ids(self, indexes: list[int]) -> list[int]:
        phones = [self.phone_of(i) for i in indexes]
        with session_scope(self.settings) as session:
            from relance.models import Contact

            return list(
                session.scalars(
                    select(Recipient.id)
                    .join(Contact, Contact.id == Recipient.contact_id)
                    .where(Recipient.campaign_id == self.campaign_id, Contact.phone.in_(phones))
                )
            )

    def dispatch(self, indexes: list[int] | None = None) -> None:
        """Send what is due for these contacts (all, by default): their Message 1, created by
        the claim or made again by retry_failed. Nothing of theirs is left due after it."""
        ids = self.recipient_ids(list(range(len(self.fates))) if indexes is None else indexes)
        send_due(self.settings, self.provider, self.followups, recipient_ids=ids)
        self.step()
        with session_scope(self.settings) as session:
            left = session.scalar(
                select(func.count()).where(Recipient.id.in_(ids), *claims.message_1_due())
            )
        assert left == 0

    def retry_failed(self) -> int:
        with session_scope(self.settings) as session:
            failed = list(
                session.scalars(
                    select(Recipient.id).where(
                        Recipient.campaign_id == self.campaign_id, Recipient.state == "failed"
                    )
                )
            )
            n = lifecycle.retry_failed(session, self.settings, self.followups, self.campaign_id)
        self.retried.update(failed)
        self.step()
        return n

    def run(self) -> None:
        n = len(self.fates)
        with session_scope(self.settings) as session:
            cat = seed_contacts(session, n, category=f"cat{self.base}", start=self.base)
            m2 = "Merci {first_name} !" if self.has_message_2 else None
            self.campaign_id = make_campaign(session, [cat], message_2=m2)
        with session_scope(self.settings) as session:
            launch_campaign(session, self.settings, self.followups, self.campaign_id)
        self.step()

        # Message 1.
        for i in self.who("m1_fail", "retry"):
            self.errors[(self.phone_of(i), "message_1")] = PermanentError("131026", "undeliverable")
        for i in self.who("limited"):
            self.errors[(self.phone_of(i), "message_1")] = PermanentError("131049", "limited")
        for i in self.who("m1_retrying"):
            self.persistent[(self.phone_of(i), "message_1")] = RetryableError("500", "later")
        for i in self.who("opt_out")[::2]:  # half the opt-outs happen before Message 1
            self.stop(i)
        self.dispatch([i for i in range(n) if self.fates[i] != "unsent"])

        # A Message 1 accepted, then reported failed by a status webhook (E2 path for M1).
        self.status_webhook(self.who("late_fail"), "failed")
        self.status_webhook(self.who("late_limited"), "failed", code="131049")
        for i in self.who("opt_out")[1::2]:
            self.stop(i)

        # Replies, one of them twice (a duplicate changes nothing).
        replying = (
            self.who("m2_ok", "m2_fail", "m2_late_fail", "replied_pending")
            if self.has_message_2
            else []
        )
        for i in replying:
            self.reply(i)
        if replying:
            self.reply(replying[0], expect="already_answered")
        for i in self.who("m2_fail"):
            self.errors[(self.phone_of(i), "message_2")] = PermanentError("131026", "undeliverable")
        m2_ids = self.m2_ids(self.who("m2_ok", "m2_fail", "m2_late_fail"))
        if m2_ids:
            send_due(self.settings, self.provider, self.followups, m2_ids)
            self.step()
        # A Message 2 accepted, then reported failed: message_2_sent -> failed (both final).
        self.status_webhook(self.who("m2_late_fail"), "failed", kind="message_2")

        # retry_failed gives every failed contact a second Message 1, which goes through.
        # A contact whose Message 1 had gone out (late failure, failed Message 2) gets it twice.
        nothing_after_m1 = "no_interaction" if self.has_message_2 else "done"
        self.expected = {
            i: {
                "m1_fail": "failed",
                "no_reply": "no_interaction",
                "m2_ok": "message_2_sent",
                "m2_fail": "failed",
                "opt_out": "opted_out",
                "late_fail": "failed",
                "done": "done",
                "limited": "failed",
                "late_limited": "failed",
                "m2_late_fail": "failed",
            }.get(f, "")
            for i, f in enumerate(self.fates)
        }
        if not self.has_message_2:
            for i in self.who("opt_out")[1::2]:
                self.expected[i] = "done"  # the stop came after Message 1 had finished it
        retried = self.who("retry", *FAILING_FATES)
        if self.who("retry"):
            assert self.retry_failed() == len(retried)
            self.dispatch(retried)
            second_chance = self.who("retry")[::2] if self.has_message_2 else []
            for i in retried:
                self.expected[i] = nothing_after_m1
            for i in second_chance:  # half the retried contacts reply this time
                self.reply(i)
                self.expected[i] = "message_2_sent"
            m2_ids = self.m2_ids(second_chance)
            if m2_ids:
                send_due(self.settings, self.provider, self.followups, m2_ids)
                self.step()

        # Windows close, unless a contact must still be waiting (R1.4).
        if not self.who("waiting"):
            with session_scope(self.settings) as session:
                sweeps.expire_windows(session, now=later(7200))
            self.step()

    def stop(self, i: int) -> None:
        with session_scope(self.settings) as session:
            outcome = answers.opt_out(session, self.phone_of(i)).outcome
        assert outcome == "opted_out"
        self.step()

    def reply(self, i: int, expect: str = "message_2_queued") -> None:
        with session_scope(self.settings) as session:
            outcome = answers.record_interaction(
                session, self.settings, self.followups, self.phone_of(i)
            ).outcome
        assert outcome == expect
        self.step()

    def m2_ids(self, indexes: list[int]) -> list[int]:
        from relance.models import Contact

        phones = [self.phone_of(i) for i in indexes]
        with session_scope(self.settings) as session:
            return list(
                session.scalars(
                    select(Message.id)
                    .join(Recipient, Recipient.id == Message.recipient_id)
                    .join(Contact, Contact.id == Recipient.contact_id)
                    .where(
                        Message.kind == "message_2",
                        Message.status == "pending",
                        Contact.phone.in_(phones),
                        Message.campaign_id == self.campaign_id,
                    )
                )
            )

    def status_webhook(
        self, indexes: list[int], status: str, code: str = "131026", kind: str = "message_1"
    ) -> None:
        if not indexes:
            return
        from relance.models import Contact

        phones = [self.phone_of(i) for i in indexes]
        with session_scope(self.settings) as session:
            rows = session.execute(
                select(Message.id, Message.provider_message_id)
                .join(Recipient, Recipient.id == Message.recipient_id)
                .join(Contact, Contact.id == Recipient.contact_id)
                .where(
                    Message.campaign_id == self.campaign_id,
                    Message.kind == kind,
                    Contact.phone.in_(phones),
                )
            ).all()
            events = [
                StatusEvent(
                    dedup_key=f"test:{uuid.uuid4().hex}",
                    provider_message_id=pmid,
                    status=status,  # type: ignore[arg-type]
                    timestamp=utcnow(),
                    our_message_id=mid,
                    error_code=code,
                    error_text="reported failed",
                )
                for mid, pmid in rows
                if pmid is not None
            ]
            apply_events(session, Receiver(self.settings, self.followups, "simulator"), events)
        self.step()

    def campaign(self) -> Campaign:
        with session_scope(self.settings) as session:
            return session.get_one(Campaign, self.campaign_id)

    def status_check(self) -> str:
        with session_scope(self.settings) as session:
            return sweeps.update_campaign_status(session, self.campaign_id)


@st.composite
def final_fates(draw: st.DrawFn) -> tuple[list[str], bool]:
    has_m2 = draw(st.booleans())
    pool = FINAL_FATES_M2 if has_m2 else FINAL_FATES_M1_ONLY
    return draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6)), has_m2


@st.composite
def fates_with_open(draw: st.DrawFn) -> tuple[list[str], bool]:
    finals = draw(st.lists(st.sampled_from(FINAL_FATES_M2), max_size=3))
    opens = draw(st.lists(st.sampled_from(OPEN_FATES), min_size=1, max_size=3))
    fates = draw(st.permutations([*finals, *opens]))
    return list(fates), True


@pytest.fixture
def scenario(settings: Settings) -> Iterator[Callable[[list[str], bool], Scenario]]:
    def make(fates: list[str], has_m2: bool) -> Scenario:
        s = Scenario(settings, fates, has_m2)
        s.run()
        assert_counters_match_rows(settings, s.campaign_id)
        return s

    yield make


@DB_EXAMPLES
@given(final_fates())
def test_p1_all_contacts_finished_completes(
    scenario: Callable[[list[str], bool], Scenario], case: tuple[list[str], bool]
) -> None:
    """P1 (R1.2, R2.2): once every contact is final the campaign is completed, by itself."""
    s = scenario(*case)
    c = s.campaign()
    assert c.status == CampaignStatus.COMPLETED, (case, c.status)
    assert c.completed_at is not None
    assert s.status_check() == "completed"  # the periodic check agrees and changes nothing
    assert s.campaign().completed_at == c.completed_at
    with session_scope(s.settings) as session:
        open_left = session.scalar(
            select(func.count()).where(
                Recipient.campaign_id == s.campaign_id, Recipient.state.in_(repo.OPEN_STATE_VALUES)
            )
        )
        assert open_left == 0
        assert s.campaign_id not in sweeps.check_sending_campaigns(
            session, s.followups, reconcile=False
        )


@DB_EXAMPLES
@given(fates_with_open())
def test_p2_pending_or_open_window_keeps_sending(
    scenario: Callable[[list[str], bool], Scenario], case: tuple[list[str], bool]
) -> None:
    """P2 (R1.4): a pending message or a contact still in its window keeps it ``sending``."""
    s = scenario(*case)
    c = s.campaign()
    assert c.status == CampaignStatus.SENDING, (case, c.status)
    assert c.completed_at is None
    assert s.status_check() == "sending"
    with session_scope(s.settings) as session:
        # R2.2: the periodic task picks it up again.
        assert s.campaign_id in sweeps.check_sending_campaigns(
            session, s.followups, reconcile=False
        )
        blocking = queries.blocking_recipients(session, s.campaign_id)
    assert blocking
    reasons = {b["phone"]: b["reason"] for b in blocking}
    for i in s.who("unsent"):  # queued, no Message 1 row created yet
        assert reasons[s.phone_of(i)] == "waiting to send Message 1"


@DB_EXAMPLES
@given(st.one_of(final_fates(), fates_with_open()), st.booleans())
def test_p3_completed_has_completed_at(
    scenario: Callable[[list[str], bool], Scenario],
    case: tuple[list[str], bool],
    retry_then_finish: bool,
) -> None:
    """P3 (R1.3): a completed campaign always has completed_at (checked after every step).

    Also through a round trip: retry_failed reopens a completed campaign (completed_at
    cleared), and finishing it again stamps completed_at again.
    """
    s = scenario(*case)
    c = s.campaign()
    if c.status == CampaignStatus.COMPLETED:
        assert c.completed_at is not None
    if retry_then_finish and c.status == CampaignStatus.COMPLETED and c.n_failed:
        s.retry_failed()
        reopened = s.campaign()
        assert (reopened.status, reopened.completed_at) == ("sending", None)
        for key in list(s.errors):
            del s.errors[key]
        s.dispatch()
        with session_scope(s.settings) as session:
            sweeps.expire_windows(session, now=later(7200))
        s.step()
        again = s.campaign()
        assert again.status == CampaignStatus.COMPLETED
        assert again.completed_at is not None and again.completed_at >= c.completed_at  # type: ignore[operator]


@DB_EXAMPLES
@given(final_fates())
def test_p5_counts_add_up(
    scenario: Callable[[list[str], bool], Scenario], case: tuple[list[str], bool]
) -> None:
    """P5 (R2.3): at completion every contact is in exactly one final bucket; none lost.

    message_2_sent + no_interaction + failed + opted_out + cancelled + done == total == the
    audience, every contact that was sent Message 1 is among them (message_1_sent counts
    contacts, never one twice), and the plan's formula agrees with ``is_complete``.
    """
    fates, _ = case
    s = scenario(*case)
    c = s.campaign()
    assert c.status == CampaignStatus.COMPLETED
    counts = counters.counts_of(c)
    buckets = (
        counts.message_2_sent
        + counts.no_interaction
        + counts.failed
        + counts.opted_out
        + counts.cancelled
        + counts.done
    )
    assert buckets == counts.total == c.total == len(fates)
    assert is_complete(counts)
    assert plan_formula_holds(counts), counts
    assert counts.message_1_sent <= buckets
    with session_scope(s.settings) as session:
        from relance.models import Contact

        rows = session.execute(
            select(Contact.phone, Recipient.state)
            .join(Recipient, Recipient.contact_id == Contact.id)
            .where(Recipient.campaign_id == s.campaign_id)
        ).all()
        sent_to = session.scalar(
            select(func.count(func.distinct(Message.recipient_id))).where(
                Message.campaign_id == s.campaign_id,
                Message.kind == "message_1",
                Message.sent_at.is_not(None),
            )
        )
    states = dict(rows)
    assert len(states) == len(fates)  # one recipient per contact
    for i, fate in enumerate(fates):
        assert states[s.phone_of(i)] == s.expected[i], (i, fate, s.fates, states)
    assert counts.message_1_sent == sent_to
    # Meta's limits are counted apart among the failed (retry_failed takes them back out).
    assert c.limited == (0 if s.who("retry") else len(s.who("limited", "late_limited")))


def test_p5_contact_sent_message_1_twice_is_counted_once(settings: Settings) -> None:
    """R2.3 regression: M1 sent, M2 failed, retry_failed sends M1 again: counted once.

    Before the fix message_1_sent was 3 for these 2 contacts, and the plan's formula
    (finals >= message_1_sent) was false on the completed campaign.
    """
    s = Scenario(settings, ["m2_fail", "retry"], has_message_2=True)
    s.run()
    c = s.campaign()
    assert (c.status, c.total, c.message_1_sent) == ("completed", 2, 2)
    assert (c.n_no_interaction, c.n_message_2_sent) == (1, 1)  # the retried one replied
    with session_scope(settings) as session:
        sends = session.scalar(
            select(func.count()).where(
                Message.campaign_id == s.campaign_id,
                Message.kind == "message_1",
                Message.sent_at.is_not(None),
            )
        )
    assert sends == 3  # three Message 1 sends reached two contacts
    assert plan_formula_holds(counters.counts_of(c))
    assert_counters_match_rows(settings, s.campaign_id)
    with session_scope(settings) as session:
        assert sweeps.reconcile_counters(session, s.campaign_id) == {}


@DB_EXAMPLES
@given(
    st.lists(st.sampled_from(["ok", "permanent", "retryable", "gave_up"]), min_size=1, max_size=5),
    st.floats(min_value=0, max_value=10),
)
def test_p4_message_2_send_schedules_status_check(
    settings: Settings, m2_outcomes: list[str], countdown: float
) -> None:
    """P4 (R1.1, R3.4, E2): every Message 2 send, successful or failed for good, queues the
    status check with the configured countdown (<= 10 s); a send to retry queues nothing yet.
    """
    cfg = settings.model_copy(update={"status_check_countdown_seconds": countdown})
    base = fresh_block()
    n = len(m2_outcomes)
    followups = RecordingFollowups()
    provider = FakeProvider(_ids=itertools.count(base * 1000))
    with session_scope(cfg) as session:
        cat = seed_contacts(session, n, category=f"cat{base}", start=base)
        cid = make_campaign(session, [cat])
    with session_scope(cfg) as session:
        launch_campaign(session, cfg, followups, cid)
    run_dispatch(cfg, provider, followups, recipient_ids=recipient_ids_of(cfg, cid))
    for i in range(n):
        with session_scope(cfg) as session:
            assert answers.record_interaction(session, cfg, followups, phone(base + i)).outcome == (
                "message_2_queued"
            )
    assert followups.checks == []
    # Claim every Message 2 as a worker would, then record the provider's answers.
    with session_scope(cfg) as session:
        m2 = list(
            session.scalars(
                select(Message.id)
                .where(Message.campaign_id == cid, Message.kind == "message_2")
                .order_by(Message.recipient_id)
            )
        )
        claimed = claims.claim_messages(session, utcnow(), 100, m2, provider=cfg.provider)
        assert claimed == sorted(m2)
        if "gave_up" in m2_outcomes:
            gave_up = [mid for mid, o in zip(m2, m2_outcomes, strict=True) if o == "gave_up"]
            session.execute(
                update(Message).where(Message.id.in_(gave_up)).values(attempts=cfg.max_attempts)
            )
    errors: dict[str, ProviderError | None] = {
        "ok": None,
        "permanent": PermanentError("131026", "undeliverable"),
        "retryable": RetryableError("500", "try later"),
        "gave_up": RetryableError("500", "still down"),
    }
    outcomes = [
        SendOutcome(mid, f"wamid.P{base}.{mid}" if o == "ok" else None, errors[o])
        for mid, o in zip(m2, m2_outcomes, strict=True)
    ]
    with session_scope(cfg) as session:
        record_outcomes(session, cfg, followups, outcomes)
    final = sum(1 for o in m2_outcomes if o != "retryable")
    assert followups.checks == [(cid, countdown)] * final
    assert all(0 <= cd <= 10 for _, cd in followups.checks)
    c = campaign_row_of(cfg, cid)
    assert c.n_message_2_sent == m2_outcomes.count("ok")
    assert c.n_failed == m2_outcomes.count("permanent") + m2_outcomes.count("gave_up")  # E2
    assert c.n_replied == m2_outcomes.count("retryable")
    assert_counters_match_rows(cfg, cid)


def campaign_row_of(settings: Settings, campaign_id: int) -> Campaign:
    with session_scope(settings) as session:
        return session.get_one(Campaign, campaign_id)


def test_p4_status_check_countdown_is_at_most_ten_seconds() -> None:
    """R1.1: the check must run within 10 s of the send: a larger countdown is refused."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        Settings(status_check_countdown_seconds=10.5)
    assert Settings().status_check_countdown_seconds == 5.0  # the plan's countdown=5
