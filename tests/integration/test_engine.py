"""The campaign engine on real databases (SQLite and PostgreSQL), driven in-process."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from relance.campaigns import answers, lifecycle, queries, sweeps
from relance.campaigns.dispatch import claim
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign, start_due_scheduled
from relance.config import Settings
from relance.db import session_scope
from relance.models import Message, Recipient, utcnow
from relance.providers.base import PermanentError
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    assert_message_1_rows,
    campaign_row,
    later,
    make_campaign,
    open_recipients,
    phone,
    run_dispatch,
    seed_contacts,
)


def _launch(settings: Settings, n: int, **kwargs: object) -> tuple[int, RecordingFollowups]:
    followups = RecordingFollowups()
    with session_scope(settings) as session:
        cat = seed_contacts(session, n)
        cid = make_campaign(session, [cat], **kwargs)  # type: ignore[arg-type]
    with session_scope(settings) as session:
        launch_campaign(session, settings, followups, cid)
    return cid, followups


def test_full_lifecycle_completes_by_itself(settings: Settings) -> None:
    cid, followups = _launch(settings, 30)
    assert followups.dispatches == 1
    fails = {phone(3), phone(4)}
    provider = FakeProvider(
        fail=lambda m: PermanentError("131026", "undeliverable") if m.to in fails else None
    )
    run_dispatch(settings, provider, followups)
    assert len(provider.sent) == 28
    assert all(m.text.startswith("Bonjour Ada") for m in provider.sent)
    c = campaign_row(settings, cid)
    assert (c.status, c.message_1_sent, c.n_awaiting_reply, c.n_failed) == ("sending", 28, 28, 2)

    # Ten contacts reply; one replies twice.
    with session_scope(settings) as session:
        for i in range(10, 20):
            outcome = answers.record_interaction(session, settings, followups, phone(i)).outcome
            assert outcome == "message_2_queued"
        outcome = answers.record_interaction(session, settings, followups, phone(10)).outcome
        assert outcome == "already_answered"
    assert len(followups.sent) == 10
    run_dispatch(settings, provider, followups, message_ids=followups.sent)
    assert sum(1 for m in provider.sent if m.kind == "message_2") == 10
    # P4 / R1.1: every Message 2 send scheduled the status check with the configured countdown.
    assert followups.checks == [(cid, settings.status_check_countdown_seconds)] * 10
    c = campaign_row(settings, cid)
    assert (c.status, c.n_message_2_sent, c.n_awaiting_reply) == ("sending", 10, 18)
    assert c.completed_at is None

    # Windows close: the last 18 become no_interaction and the campaign completes at once.
    with session_scope(settings) as session:
        assert sweeps.expire_windows(session, now=later(7200)) == 18
    c = campaign_row(settings, cid)
    assert c.status == "completed"
    assert c.completed_at is not None
    assert (c.n_message_2_sent, c.n_no_interaction, c.n_failed) == (10, 18, 2)
    assert open_recipients(settings, cid) == 0
    assert_counters_match_rows(settings, cid)


def test_launch_creates_recipients_only_and_the_claim_their_message_1(
    settings: Settings,
) -> None:
    """A launch writes no message row: each queued recipient's Message 1 is created when a
    dispatcher claims it, once, stamped on the recipient."""
    cid, followups = _launch(settings, 5)
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0
        stamps = set(
            session.scalars(
                select(Recipient.message_1_created_at).where(Recipient.campaign_id == cid)
            )
        )
        assert stamps == {None}
        blocking = queries.blocking_recipients(session, cid)
    assert [b["reason"] for b in blocking] == ["waiting to send Message 1"] * 5
    c = campaign_row(settings, cid)
    assert (c.total, c.n_queued) == (5, 5)

    provider = FakeProvider()
    run_dispatch(settings, provider, followups)
    assert sorted(m.to for m in provider.sent) == [phone(i) for i in range(5)]
    with session_scope(settings) as session:
        rows = session.execute(
            select(Message, Recipient.message_1_created_at).join(
                Recipient, Recipient.id == Message.recipient_id
            )
        ).all()
    assert len(rows) == 5
    for message, created in rows:
        assert (message.kind, message.status, message.attempts) == ("message_1", "sent", 1)
        assert message.provider == settings.provider
        assert created is not None and message.created_at == message.claimed_at == created
    assert_message_1_rows(settings, cid)
    assert_counters_match_rows(settings, cid)
    run_dispatch(settings, provider, followups)  # nothing more is due: nothing created
    assert len(provider.sent) == 5
    assert_message_1_rows(settings, cid)


@pytest.mark.parametrize("policy", ["fail", "resend"])
def test_a_worker_dying_after_the_claim_leaves_the_created_rows_sending(
    settings: Settings, policy: str
) -> None:
    """The claim that creates a Message 1 commits it ``sending`` before anything is sent: a
    worker killed then leaves it where recovery looks, never sent twice nor created twice."""
    cfg = settings.model_copy(update={"unknown_outcome_policy": policy})
    cid, followups = _launch(cfg, 3, message_2=None)
    claimed = claim(cfg, 2)  # committed; the worker dies before sending
    assert sorted(m.to for m in claimed) == [phone(0), phone(1)]
    with session_scope(cfg) as session:
        rows = session.execute(
            select(Message.status, Message.attempts, Message.claimed_at, Recipient.state)
            .join(Recipient, Recipient.id == Message.recipient_id)
            .order_by(Message.id)
        ).all()
    assert [(status, attempts, state) for status, attempts, _, state in rows] == [
        ("sending", 1, "queued")
    ] * 2
    assert all(claimed_at is not None for _, _, claimed_at, _ in rows)

    provider = FakeProvider()
    run_dispatch(cfg, provider, followups)  # another worker: only the third is due
    assert [m.to for m in provider.sent] == [phone(2)]
    assert_message_1_rows(cfg, cid)
    with session_scope(cfg) as session:  # within the grace period nothing is touched
        assert sweeps.recover_interrupted(session, cfg) == {"failed": 0, "requeued": 0}
    with session_scope(cfg) as session:  # the grace period goes by
        session.execute(
            update(Message)
            .where(Message.status == "sending")
            .values(claimed_at=utcnow() - timedelta(seconds=cfg.sending_grace_seconds + 5))
        )
    with session_scope(cfg) as session:
        outcome = sweeps.recover_interrupted(session, cfg)
    if policy == "fail":
        assert outcome == {"failed": 2, "requeued": 0}
        c = campaign_row(cfg, cid)
        assert (c.status, c.n_failed, c.n_done) == ("completed", 2, 1)
    else:
        assert outcome == {"failed": 0, "requeued": 2}
        run_dispatch(cfg, provider, followups)
        assert sorted(m.to for m in provider.sent) == [phone(i) for i in range(3)]
        c = campaign_row(cfg, cid)
        assert (c.status, c.n_done, c.message_1_sent) == ("completed", 3, 3)
    assert_message_1_rows(cfg, cid)
    assert_counters_match_rows(cfg, cid)


def test_campaign_without_message_2_finishes_on_send(settings: Settings) -> None:
    cid, followups = _launch(settings, 5, message_2=None)
    run_dispatch(settings, FakeProvider(), followups)
    c = campaign_row(settings, cid)
    assert (c.status, c.n_done, c.message_1_sent) == ("completed", 5, 5)
    assert c.completed_at is not None


def test_late_reply_sends_nothing(settings: Settings) -> None:
    _cid, followups = _launch(settings, 2)
    run_dispatch(settings, FakeProvider(), followups)
    with session_scope(settings) as session:
        outcome = answers.record_interaction(
            session, settings, followups, phone(0), now=later(7200)
        ).outcome
    assert outcome == "late_reply"
    assert followups.sent == []
    with session_scope(settings) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2


def test_opted_out_contacts_are_skipped_and_counted(settings: Settings) -> None:
    from relance.models import Contact, utcnow

    followups = RecordingFollowups()
    with session_scope(settings) as session:
        cat = seed_contacts(session, 4)
        session.execute(
            update(Contact).where(Contact.phone == phone(1)).values(opted_out_at=utcnow())
        )
        cid = make_campaign(session, [cat])
    with session_scope(settings) as session:
        launch_campaign(session, settings, followups, cid)
    c = campaign_row(settings, cid)
    assert (c.total, c.skipped_opted_out, c.n_queued) == (3, 1, 3)


def test_launch_needs_a_contact_that_has_not_opted_out(settings: Settings) -> None:
    """The audience check looks at the categories and at the listed contacts, opted-out
    contacts removed: 422 when none is left, a launch otherwise."""
    from relance.errors import Invalid
    from relance.models import Contact, campaign_contacts, utcnow

    with session_scope(settings) as session:
        stopped = seed_contacts(session, 3, category="stopped")
        other = seed_contacts(session, 2, category="other", start=3)
        session.execute(
            update(Contact)
            .where(Contact.phone.in_([phone(i) for i in range(4)]))
            .values(opted_out_at=utcnow())
        )
        ids = dict(session.execute(select(Contact.phone, Contact.id)).tuples().all())
        audiences = {
            "opted-out category": ([stopped], []),
            "opted-out contact": ([], [ids[phone(0)]]),
            "both opted out": ([stopped], [ids[phone(3)]]),
            "one listed contact": ([stopped], [ids[phone(4)]]),
            "second category": ([stopped, other], []),
        }
        campaigns = {}
        for name, (categories, contacts) in audiences.items():
            campaigns[name] = make_campaign(session, categories)
            if contacts:
                session.execute(
                    campaign_contacts.insert(),
                    [{"campaign_id": campaigns[name], "contact_id": c} for c in contacts],
                )
    for name, cid in campaigns.items():
        with session_scope(settings) as session:
            if name in ("one listed contact", "second category"):
                c = launch_campaign(session, settings, RecordingFollowups(), cid)
                assert (c.status, c.total) == ("sending", 1), name
            else:
                with pytest.raises(Invalid, match="audience is empty"):
                    launch_campaign(session, settings, RecordingFollowups(), cid)


def test_a_launch_whose_fan_out_gives_no_recipient_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last contact opts out between the audience check and the fan-out: the launch is a
    422 and changes nothing, rather than a campaign of no recipient that never ends."""
    from relance.campaigns import repository
    from relance.errors import Invalid
    from relance.models import Contact

    with session_scope(settings) as session:
        cid = make_campaign(session, [seed_contacts(session, 2)])
        session.execute(update(Contact).values(opted_out_at=utcnow()))
    monkeypatch.setattr(repository, "has_reachable_contact", lambda *_: True)  # the race
    followups = RecordingFollowups()
    with pytest.raises(Invalid, match="audience is empty"), session_scope(settings) as session:
        launch_campaign(session, settings, followups, cid)
    c = campaign_row(settings, cid)
    assert (c.status, c.total, c.started_at) == ("draft", 0, None)
    assert followups.dispatches == 0


def test_scheduled_campaigns_are_checked_again_when_they_start(settings: Settings) -> None:
    """At its time each scheduled campaign runs the launch checks again; one that fails them
    ends cancelled with the reason, and the others start all the same."""
    from relance.models import Campaign, Contact

    followups = RecordingFollowups()
    at = utcnow() + timedelta(hours=1)
    with session_scope(settings) as session:
        emptied = seed_contacts(session, 3, category="emptied")
        kept = seed_contacts(session, 2, category="kept", start=3)
        ids = [make_campaign(session, [c]) for c in (emptied, kept, kept, kept)]
        for cid in ids:
            campaign = session.get_one(Campaign, cid)
            campaign.scheduled_at = at
            campaign.placeholder_defaults = {"bio": ""}
        session.get_one(Campaign, ids[2]).message_1 = "Bonjour {bio}"
        session.get_one(Campaign, ids[3]).scheduled_at = at + timedelta(hours=1)
    for cid in ids:
        with session_scope(settings) as session:
            launched = launch_campaign(session, settings, followups, cid)
            assert launched.status == "scheduled"
    # After scheduling: the first audience opts out, a contact of the other gets a long bio.
    with session_scope(settings) as session:
        session.execute(
            update(Contact)
            .where(Contact.phone.in_([phone(i) for i in range(3)]))
            .values(opted_out_at=utcnow())
        )
        session.execute(
            update(Contact).where(Contact.phone == phone(4)).values(attributes={"bio": "b" * 5000})
        )
        bio_contact = session.scalar(select(Contact.id).where(Contact.phone == phone(4)))
    with session_scope(settings) as session:
        started = start_due_scheduled(session, settings, followups, at)
    assert started == [ids[1]]
    assert followups.dispatches == 1  # the started one's, kept through the others' rollbacks
    rows = [campaign_row(settings, cid) for cid in ids]
    assert [r.status for r in rows] == ["cancelled", "sending", "cancelled", "scheduled"]
    assert rows[0].status_reason == (
        "not started at its scheduled time: "
        "the audience is empty once opted-out contacts are removed"
    )
    assert rows[2].status_reason == (
        "not started at its scheduled time: message_1 is up to 5,008 characters once "
        f"personalised for 1 recipient(s) (contact {bio_contact} first); WhatsApp allows 4,096"
    )
    assert all(r.cancelled_at == at for r in (rows[0], rows[2]))
    assert (rows[1].total, rows[1].n_queued, rows[1].status_reason) == (2, 2, None)
    assert (rows[0].total, rows[2].total) == (0, 0)
    with session_scope(settings) as session:
        count = session.scalar(select(func.count()).select_from(Recipient))
    assert count == 2
    # Nothing left due: a second run starts and cancels nothing.
    with session_scope(settings) as session:
        assert start_due_scheduled(session, settings, followups, at) == []


def test_the_dispatcher_sends_even_when_starting_scheduled_campaigns_fails(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Campaigns already sending do not wait on the scheduled ones."""
    from relance import tasks

    def broken(*_: object) -> list[int]:
        raise RuntimeError("database gone while starting the scheduled campaigns")

    dispatched: list[object] = []

    def dispatch(message_ids: object, budget: float) -> dict[str, object]:
        dispatched.append(message_ids)
        return {"sent": 0, "failed": 0, "retried": 0, "more": False, "wait_reason": None}

    monkeypatch.setattr("relance.campaigns.launch.start_due_scheduled", broken)
    monkeypatch.setattr(tasks, "_dispatch", dispatch)
    assert tasks.send_campaign_messages.run()["sent"] == 0
    assert dispatched == [None]


def test_status_check_reads_counters(settings: Settings) -> None:
    cid, followups = _launch(settings, 3)
    with session_scope(settings) as session:
        assert sweeps.update_campaign_status(session, cid) == "sending"
    run_dispatch(settings, FakeProvider(), followups)
    with session_scope(settings) as session:
        sweeps.expire_windows(session, now=later(7200))
    with session_scope(settings) as session:
        assert sweeps.update_campaign_status(session, cid) == "completed"
    with session_scope(settings) as session:
        n = session.scalar(
            select(func.count()).where(
                Recipient.campaign_id == cid, Recipient.state == "no_interaction"
            )
        )
    assert n == 3


def test_opting_out_through_the_api_path_ends_open_recipients(settings: Settings) -> None:
    from relance.models import Contact
    from tests.support.api import api_client

    cid, followups = _launch(settings, 3)
    with session_scope(settings) as session:
        contact_id = session.scalar(select(Contact.id).where(Contact.phone == phone(1)))
    r = api_client(settings).patch(f"/api/contacts/{contact_id}", json={"opted_out": True})
    assert r.status_code == 200, r.text
    assert r.json()["opted_out"] is True
    run_dispatch(settings, FakeProvider(), followups)
    c = campaign_row(settings, cid)
    assert (c.n_opted_out, c.message_1_sent, c.n_awaiting_reply) == (1, 2, 2)
    assert_counters_match_rows(settings, cid)


def test_a_deleted_contact_leaves_a_final_anonymised_recipient_nothing_sends_to(
    settings: Settings,
) -> None:
    """Its failed recipient in a running campaign stays (no drift for the reconciliation to
    "repair"), is never retried nor dispatched, and the campaign still completes by itself."""
    from relance.contacts.service import delete_contact
    from relance.errors import Conflict
    from relance.models import Contact

    cid, followups = _launch(settings, 3)
    provider = FakeProvider(
        fail=lambda m: PermanentError("131026", "undeliverable") if m.to == phone(0) else None
    )
    run_dispatch(settings, provider, followups)
    with session_scope(settings) as session:
        contact_id = session.scalar(select(Contact.id).where(Contact.phone == phone(0)))
        assert contact_id is not None
        delete_contact(session, contact_id)
    with session_scope(settings) as session:
        failed = session.execute(
            select(Recipient.id, Recipient.contact_id).where(Recipient.state == "failed")
        ).one()
        assert failed.contact_id is None
        assert sweeps.reconcile_counters(session, cid) == {}
        with pytest.raises(Conflict, match="no failed recipient to retry"):
            lifecycle.retry_failed(session, settings, followups, cid)
    sends = len(provider.sent)
    run_dispatch(settings, provider, followups)
    assert len(provider.sent) == sends
    with session_scope(settings) as session:
        assert sweeps.expire_windows(session, now=later(7200)) == 2
    c = campaign_row(settings, cid)
    assert (c.status, c.total, c.n_failed, c.n_no_interaction) == ("completed", 3, 1, 2)
    assert_counters_match_rows(settings, cid)


def test_safety_net_repairs_drift_and_completes(settings: Settings) -> None:
    """R2.1/R2.2/E3: a campaign whose counters drifted (a lost update) still completes."""
    from relance.models import Campaign

    cid, followups = _launch(settings, 3, message_2=None)
    with session_scope(settings) as session:
        # Simulate drift: the counters claim one recipient is still queued.
        session.execute(update(Campaign).where(Campaign.id == cid).values(n_queued=1, n_done=-1))
    run_dispatch(settings, FakeProvider(), followups)
    assert campaign_row(settings, cid).status == "sending"
    checks = RecordingFollowups()
    with session_scope(settings) as session:
        assert sweeps.check_sending_campaigns(session, checks) == [cid]
    assert checks.checks == [(cid, 0)]
    with session_scope(settings) as session:
        assert sweeps.update_campaign_status(session, cid) == "completed"
    c = campaign_row(settings, cid)
    assert (c.n_done, c.n_queued, c.completed_at is not None) == (3, 0, True)


def test_daily_quota_pauses_sending_and_says_until_when(settings: Settings) -> None:
    from relance.config import load_settings
    from relance.pacing.status import pacing_status

    quota = load_settings(
        database_url=settings.database_url,
        data_dir=settings.data_dir,
        daily_quota=3,
        send_delay_seconds=0,
        batch_pause_seconds=0,
        max_sends_per_second=0,
    )
    cid, followups = _launch(quota, 5)
    provider = FakeProvider()
    run_dispatch(quota, provider, followups)
    assert len(provider.sent) == 3
    c = campaign_row(quota, cid)
    assert (c.status, c.message_1_sent, c.n_queued) == ("sending", 3, 2)
    status = pacing_status(quota)
    assert status is not None
    assert status["reason"] == "daily_quota"
    assert status["detail"].startswith("paused by quota until ")
    assert status["until"].hour == 0 and status["until"].minute == 0
