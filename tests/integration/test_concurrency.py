"""The engine's concurrency guarantees, on PostgreSQL with real threads racing (SPEC 2).

Every transition is a compare-and-set: of two racing events exactly one wins. Threads are
released together by a ``threading.Barrier``; nothing waits on a fixed sleep.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select, text, update

from relance.campaigns import answers, claims, lifecycle, sweeps
from relance.campaigns.dispatch import dispatch
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.inbound import Receiver, apply_events
from relance.campaigns.launch import launch_campaign
from relance.campaigns.outcomes import DispatchReport, SendOutcome, record_outcomes
from relance.config import Settings
from relance.db import session_scope
from relance.models import Campaign, Contact, Message, Recipient, utcnow
from relance.pacing.limiter import make_limiter
from relance.providers.base import PermanentError
from relance.providers.events import InteractionEvent, ProviderEvent, StatusEvent
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    assert_message_1_rows,
    campaign_row,
    later,
    make_campaign,
    phone,
    recipient_ids_of,
    run_dispatch,
    seed_contacts,
)

T = TypeVar("T")


def race(*calls: Callable[[], T]) -> list[T]:
    """Run every call in its own thread, all released at once; re-raise the first error."""
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(go, c) for c in calls]
        return [f.result(timeout=120) for f in futures]


def launch(
    settings: Settings, n: int, start: int, message_2: str | None = "Merci {first_name} !"
) -> tuple[int, RecordingFollowups]:
    followups = RecordingFollowups()
    with session_scope(settings) as session:
        cat = seed_contacts(session, n, category=f"c{start}", start=start)
        cid = make_campaign(session, [cat], message_2=message_2)
    with session_scope(settings) as session:
        launch_campaign(session, settings, followups, cid)
    return cid, followups


def send_message_1(settings: Settings, campaign_id: int, provider: FakeProvider) -> None:
    """Send this campaign's Message 1s (created by the claim), not another campaign's."""
    run_dispatch(settings, provider, recipient_ids=recipient_ids_of(settings, campaign_id))


class CompletionLog(logging.Handler):
    """Collects the ``campaign completed`` records of counters.try_complete."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.completed: Counter[int] = Counter()
        self._lock_ = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "campaign completed":
            with self._lock_:
                self.completed[int(record.__dict__["campaign_id"])] += 1


@pytest.fixture
def completions() -> Iterator[CompletionLog]:
    logger = logging.getLogger("relance.campaigns.counters")
    handler = CompletionLog()
    old_level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# (a) a reply racing the window's close --------------------------------------------------------


def test_reply_racing_window_close_has_exactly_one_outcome(pg_settings: Settings) -> None:
    """SPEC 2: a reply arriving as the window closes gives exactly one outcome.

    30 rounds, each on a fresh recipient: 6 threads record the same contact's reply while 2
    threads sweep its (just closed) window. Either the reply wins (replied, one Message 2) or
    the sweep does (no_interaction, no Message 2); never both, never two Message 2s.
    """
    settings = pg_settings
    rounds = 30
    cid, followups = launch(settings, rounds, start=0)
    send_message_1(settings, cid, FakeProvider())
    base = utcnow()
    closes: dict[int, Any] = {}
    with session_scope(settings) as session:
        rows = session.execute(
            select(Recipient.id, Contact.phone)
            .join(Contact, Contact.id == Recipient.contact_id)
            .where(Recipient.campaign_id == cid)
        ).all()
        for rid, ph in rows:
            i = int(ph[-8:])
            # Recipient i's window closes after the others before it: sweeping it at
            # closes[i] + 1 s touches only recipient i (the earlier ones are final by then).
            closes[i] = base + timedelta(seconds=1000 * (i + 1))
            session.execute(
                update(Recipient).where(Recipient.id == rid).values(window_closes_at=closes[i])
            )

    def reply(i: int) -> Callable[[], tuple[str, int | None]]:
        def call() -> tuple[str, int | None]:
            with session_scope(settings) as session:
                applied = answers.record_interaction(session, settings, followups, phone(i))
            return applied.outcome, applied.recipient_id

        return call

    def sweep(i: int) -> Callable[[], tuple[str, int | None]]:
        def call() -> tuple[str, int | None]:
            with session_scope(settings) as session:
                n = sweeps.expire_windows(session, now=closes[i] + timedelta(seconds=1))
            return ("expired", n)

        return call

    winners: Counter[str] = Counter()
    for i in range(rounds):
        results = race(*[reply(i)] * 6, sweep(i), sweep(i))
        replies = [r for r in results if r[0] != "expired"]
        expired = sum(n or 0 for tag, n in results if tag == "expired")
        queued = sum(1 for outcome, _ in replies if outcome == "message_2_queued")
        with session_scope(settings) as session:
            state, rid = session.execute(
                select(Recipient.state, Recipient.id)
                .join(Contact, Contact.id == Recipient.contact_id)
                .where(Contact.phone == phone(i), Recipient.campaign_id == cid)
            ).one()
            m2 = session.scalar(
                select(func.count()).where(Message.recipient_id == rid, Message.kind == "message_2")
            )
        assert queued + expired == 1, (i, results)
        if queued:
            winners["reply"] += 1
            assert (state, m2) == ("replied", 1)
            assert {o for o, _ in replies} <= {"message_2_queued", "already_answered"}
        else:
            winners["window"] += 1
            assert (state, m2) == ("no_interaction", 0)
            assert {o for o, _ in replies} == {"late_reply"}
    assert winners["reply"] + winners["window"] == rounds
    assert len(followups.sent) == len(set(followups.sent)) == winners["reply"]
    assert_counters_match_rows(settings, cid)
    c = campaign_row(settings, cid)
    assert (c.n_replied, c.n_no_interaction, c.interactions) == (
        winners["reply"],
        winners["window"],
        winners["reply"],
    )


# (b) two transactions finishing the last two recipients ---------------------------------------


def test_last_two_recipients_finishing_at_once_complete_the_campaign_once(
    pg_settings: Settings, completions: CompletionLog
) -> None:
    """R1.2/R1.3: whichever of two racing transactions finishes last completes the campaign,
    exactly once: one ``campaign completed`` record, completed_at set and never moved."""
    settings = pg_settings
    provider = FakeProvider()
    kinds = ("m2_sent+expire", "opt_out+opt_out", "late_failure+expire", "m2_failed+opt_out")
    campaigns: list[int] = []
    for k in range(16):
        kind = kinds[k % len(kinds)]
        start = 1000 + 10 * k
        cid, followups = launch(settings, 2, start=start)
        campaigns.append(cid)
        send_message_1(settings, cid, provider)
        first, second = phone(start), phone(start + 1)
        calls: list[Callable[[], object]] = []
        if kind.startswith("m2_"):
            with session_scope(settings) as session:
                answers.record_interaction(session, settings, followups, first)
            with session_scope(settings) as session:
                m2_id = session.scalar(
                    select(Message.id).where(
                        Message.campaign_id == cid, Message.kind == "message_2"
                    )
                )
                assert m2_id is not None
                assert claims.claim_messages(
                    session, utcnow(), 10, [m2_id], provider=settings.provider
                ) == [m2_id]
            error = PermanentError("131026", "undeliverable") if kind.startswith("m2_f") else None
            outcome = SendOutcome(m2_id, None if error else f"wamid.M2.{uuid.uuid4().hex}", error)

            def send_m2(o: SendOutcome = outcome, f: RecordingFollowups = followups) -> object:
                with session_scope(settings) as session:
                    return record_outcomes(session, settings, f, [o])

            calls.append(send_m2)
        elif kind.startswith("opt_out"):
            calls.append(partial(_opt_out, settings, first))
        else:
            with session_scope(settings) as session:
                pmid = session.scalar(
                    select(Message.provider_message_id)
                    .join(Recipient, Recipient.id == Message.recipient_id)
                    .join(Contact, Contact.id == Recipient.contact_id)
                    .where(Contact.phone == first, Message.campaign_id == cid)
                )
            assert pmid is not None
            event = StatusEvent(f"race:{uuid.uuid4().hex}", pmid, "failed", utcnow())
            calls.append(partial(_webhook, settings, followups, [event]))
        if kind.endswith("+expire"):
            calls.append(partial(_expire, settings))
        else:
            calls.append(partial(_opt_out, settings, second))
        race(*calls)

        c = campaign_row(settings, cid)
        assert c.status == "completed", (kind, c.status)
        assert c.completed_at is not None
        assert completions.completed[cid] == 1, (kind, completions.completed[cid])
        with session_scope(settings) as session:
            assert sweeps.update_campaign_status(session, cid) == "completed"
        assert campaign_row(settings, cid).completed_at == c.completed_at
        assert completions.completed[cid] == 1
        assert_counters_match_rows(settings, cid)
    assert set(completions.completed) >= set(campaigns)


def _opt_out(settings: Settings, ph: str) -> object:
    with session_scope(settings) as session:
        return answers.opt_out(session, ph)


def _expire(settings: Settings) -> object:
    with session_scope(settings) as session:
        return sweeps.expire_windows(session, now=later(7200))


def _webhook(
    settings: Settings, followups: RecordingFollowups, events: list[ProviderEvent]
) -> dict[str, int]:
    with session_scope(settings) as session:
        return apply_events(session, Receiver(settings, followups, "simulator"), events)


# (c) several dispatchers on one queue -----------------------------------------------------------


def test_concurrent_dispatchers_send_each_message_once(pg_settings: Settings) -> None:
    """FOR UPDATE SKIP LOCKED + compare-and-set: 4 dispatchers over 500 fresh queued
    recipients create exactly one Message 1 each and send each once."""
    settings = pg_settings
    n = 500
    cid, followups = launch(settings, n, start=5000, message_2=None)
    with session_scope(settings) as session:  # the launch created the recipients only
        assert session.scalar(select(func.count()).select_from(Message)) == 0
    provider = FakeProvider()
    limiter = make_limiter(settings)

    def dispatcher() -> DispatchReport:
        return dispatch(settings, provider, limiter, followups, budget_seconds=60, batch=20)

    reports = race(*[dispatcher] * 4)
    ids = [m.message_id for m in provider.sent]
    duplicates = [mid for mid, k in Counter(ids).items() if k > 1]
    assert duplicates == []
    assert len(ids) == n
    assert sum(r.sent for r in reports) == n
    assert sum(1 for r in reports if r.sent) >= 2  # they shared the work
    with session_scope(settings) as session:
        statuses = Counter(
            session.scalars(select(Message.status).where(Message.campaign_id == cid))
        )
        assert set(ids) == set(
            session.scalars(select(Message.id).where(Message.campaign_id == cid))
        )
    assert statuses == {"sent": n}
    assert Counter(m.to for m in provider.sent) == {phone(5000 + i): 1 for i in range(n)}
    assert_message_1_rows(settings, cid)
    c = campaign_row(settings, cid)
    assert (c.status, c.n_done, c.message_1_sent) == ("completed", n, n)
    assert_counters_match_rows(settings, cid)


def test_concurrent_claims_are_disjoint(pg_settings: Settings) -> None:
    """claim_messages from 8 threads at once, over pending messages (Message 2s, Message 1s
    made again by retry_failed) and queued recipients without a Message 1: every pending
    message claimed exactly once, every queued recipient given exactly one Message 1."""
    settings = pg_settings
    n, failed, replied = 500, 40, 30
    cid, followups = launch(settings, n, start=7000)
    first = recipient_ids_of(settings, cid)[: failed + replied]
    fail_first = {phone(7000 + i) for i in range(failed)}
    provider = FakeProvider(
        fail=lambda m: PermanentError("131026", "undeliverable") if m.to in fail_first else None
    )
    run_dispatch(settings, provider, followups, recipient_ids=first)
    for i in range(failed, failed + replied):
        with session_scope(settings) as session:
            answers.record_interaction(session, settings, followups, phone(7000 + i))
    with session_scope(settings) as session:
        assert lifecycle.retry_failed(session, settings, followups, cid) == failed
    with session_scope(settings) as session:
        pending = set(session.scalars(select(Message.id).where(Message.status == "pending")))
    assert len(pending) == failed + replied

    def claimer() -> list[int]:
        mine: list[int] = []
        while True:
            with session_scope(settings) as session:
                got = claims.claim_messages(session, utcnow(), 17, provider=settings.provider)
            if not got:
                return mine
            mine.extend(got)

    per_thread = race(*[claimer] * 8)
    claimed = [mid for ids in per_thread for mid in ids]
    fresh = n - failed - replied
    assert len(claimed) == len(set(claimed)) == failed + replied + fresh
    assert pending <= set(claimed)
    assert sum(1 for ids in per_thread if ids) >= 2
    with session_scope(settings) as session:
        claimed_rows = session.execute(
            select(Message.kind, Message.status, Message.attempts).where(Message.id.in_(claimed))
        ).all()
        due_left = session.scalar(
            select(func.count()).where(Recipient.campaign_id == cid, *claims.message_1_due())
        )
    assert Counter(claimed_rows) == {
        ("message_1", "sending", 1): fresh + failed,  # a retry_failed row: its first attempt
        ("message_2", "sending", 1): replied,
    }
    assert due_left == 0
    assert_message_1_rows(settings, cid, retried=dict.fromkeys(first[:failed], 1))


# (d) one webhook delivered four times at once --------------------------------------------------


def test_same_webhook_batch_from_four_threads_applies_once(pg_settings: Settings) -> None:
    """Provider retries deliver the same batch concurrently: applied once, the rest counted
    as duplicates; a reply in it queues one Message 2, not four."""
    settings = pg_settings
    n = 20
    cid, followups = launch(settings, n, start=9000)
    send_message_1(settings, cid, FakeProvider())
    with session_scope(settings) as session:
        sent = session.execute(
            select(Message.id, Message.provider_message_id).where(Message.campaign_id == cid)
        ).all()
    now = utcnow()
    batch: list[ProviderEvent] = []
    for mid, pmid in sent:
        assert pmid is not None
        # Out of order and duplicated inside the batch too: read before delivered.
        batch.append(StatusEvent(f"st:{pmid}:read", pmid, "read", now, our_message_id=mid))
        batch.append(StatusEvent(f"st:{pmid}:delivered", pmid, "delivered", now))
        batch.append(StatusEvent(f"st:{pmid}:read", pmid, "read", now))
    repliers = [phone(9000 + i) for i in range(5)]
    for k, ph in enumerate(repliers):
        batch.append(InteractionEvent(f"in:{cid}:{k}", ph, "text", "oui", now))
    distinct = len({e.dedup_key for e in batch})

    tallies = race(*[lambda: _webhook(settings, followups, batch)] * 4)
    total = Counter[str]()
    for t in tallies:
        total.update(t)
    assert total["applied"] == distinct
    assert total["duplicates"] == 4 * len(batch) - distinct
    c = campaign_row(settings, cid)
    assert (c.delivered, c.read, c.interactions, c.n_replied) == (n, n, 5, 5)
    with session_scope(settings) as session:
        statuses = Counter(
            session.scalars(
                select(Message.status).where(
                    Message.campaign_id == cid, Message.kind == "message_1"
                )
            )
        )
        m2 = session.scalar(
            select(func.count()).where(Message.campaign_id == cid, Message.kind == "message_2")
        )
    assert statuses == {"read": n}
    assert m2 == 5 and len(followups.sent) == 5
    assert_counters_match_rows(settings, cid)
    with session_scope(settings) as session:
        assert (
            session.scalar(select(func.count()).select_from(Campaign).where(Campaign.id == cid))
            == 1
        )


def test_deleting_a_contact_a_launch_is_adding_waits_for_it_then_refuses(
    pg_settings: Settings,
) -> None:
    """The launch's uncommitted recipient holds the contact (its foreign key's lock): the
    deletion waits for the launch, then sees the recipient is open and answers 409. Checking
    before waiting would have let the deletion through, leaving a queued recipient with no
    contact that nothing can ever send to, and the campaign sending for ever."""
    from relance.contacts.service import delete_contact
    from relance.db import session_factory
    from relance.errors import Conflict
    from relance.processes import wait_until

    settings = pg_settings
    with session_scope(settings) as session:
        cid = make_campaign(session, [seed_contacts(session, 2)])
        contact_id = session.scalars(select(Contact.id).order_by(Contact.id)).first()
        assert contact_id is not None
    launching = session_factory(settings)()
    launch_campaign(launching, settings, RecordingFollowups(), cid)  # flushed only

    def delete() -> None:
        with session_scope(settings) as session:
            delete_contact(session, contact_id)

    def deletion_waits_on_a_lock() -> bool:
        with session_scope(settings) as session:
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        return bool(waiting)

    with ThreadPoolExecutor(max_workers=1) as pool:
        deletion = pool.submit(delete)
        try:
            wait_until(deletion_waits_on_a_lock, 30, "the deletion to wait for the launch")
        finally:
            launching.commit()
            launching.close()
        with pytest.raises(Conflict, match=f"unfinished campaigns \\[{cid}\\]"):
            deletion.result(timeout=60)
    with session_scope(settings) as session:
        assert session.get(Contact, contact_id) is not None
        assert (
            session.scalar(select(Recipient.contact_id).where(Recipient.contact_id == contact_id))
            == contact_id
        )
    assert_counters_match_rows(settings, cid)
