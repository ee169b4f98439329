"""Celery tasks with the plan's names: ids in, one service call, a small dict out.

Every task is idempotent (its service works by compare-and-set) and acknowledged late, so a
task delivered twice, or redelivered after its worker died, sends nothing twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery.signals import worker_shutting_down

from relance.campaigns import dispatch, inbox, launch, sweeps
from relance.config import get_settings
from relance.db import session_scope
from relance.pacing.limiter import make_limiter
from relance.providers.registry import get_provider
from relance.worker import celery_app

log = logging.getLogger(__name__)
DISPATCH_BUDGET_SECONDS = 20.0


class Coalescer:
    """Calls ``publish`` soon after ``kick``, at most once per ``every`` seconds, from a thread
    of its own: the webhook route kicks on every request, one apply task is enough for many.

    A kick always leads to a publish that starts after it (the flag is cleared before the
    publish), so an appended entry is never left waiting for the Beat safety net.
    """

    def __init__(self, publish: Callable[[], Any], every: float = 0.02) -> None:
        self.publish = publish
        self.every = every
        self._wanted = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def kick(self) -> None:
        self._wanted.set()
        if self._thread is None or self._pid != os.getpid():  # none yet, or we were forked
            with self._lock:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._thread = threading.Thread(
                        target=self._run, name="relance-apply-kicker", daemon=True
                    )
                    self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            try:
                self.publish()
            except Exception:  # the broker is down: Beat's safety net applies the inbox later
                log.exception("could not publish apply_webhooks")
            time.sleep(self.every)  # a pace, not a wait for an event: kicks gather meanwhile


class CeleryFollowups:
    """Followups published as Celery tasks (after the transaction commits)."""

    def __init__(self) -> None:
        self._applier = Coalescer(
            lambda: apply_webhooks.apply_async(
                expires=get_settings().webhook_apply_interval_seconds * 10
            )
        )

    def apply_webhooks(self) -> None:
        self._applier.kick()

    def send_message(self, message_id: int) -> None:
        send_single_message.delay(message_id)

    def check_status(self, campaign_id: int, countdown: float) -> None:
        # The plan, task 1.1: update_campaign_status.apply_async(..., countdown=5).
        update_campaign_status.apply_async(args=[campaign_id], countdown=countdown)

    def dispatch(self) -> None:
        send_campaign_messages.apply_async(expires=get_settings().dispatch_interval_seconds * 4)


followups = CeleryFollowups()
STOPPING = threading.Event()


@worker_shutting_down.connect
def _stop_dispatching(**_: Any) -> None:
    STOPPING.set()


def _dispatch(message_ids: list[int] | None, budget: float) -> dict[str, Any]:
    settings = get_settings()
    report = dispatch.dispatch(
        settings,
        get_provider(settings),
        make_limiter(settings),
        followups,
        budget_seconds=budget,
        message_ids=message_ids,
        stopping=STOPPING.is_set,
    )
    return {
        "sent": report.sent,
        "failed": report.failed,
        "retried": report.retried,
        "more": report.more,
        "wait_reason": report.wait_reason,
    }


@celery_app.task(name="relance.send_single_message", acks_late=True)
def send_single_message(message_id: int) -> dict[str, Any]:
    """Send one message now (a Message 2 right after the reply), within the shared pace."""
    return _dispatch([message_id], budget=30.0)


@celery_app.task(name="relance.send_campaign_messages", acks_late=True)
def send_campaign_messages(campaign_id: int | None = None) -> dict[str, Any]:
    """The dispatcher: claim due messages (Message 2 first) and send them, paced.

    ``campaign_id`` is accepted for the plan's signature; the dispatcher serves every sending
    campaign of the sender in priority order, because pacing is per sender, not per campaign.
    """
    settings = get_settings()
    try:
        with session_scope(settings) as session:
            launch.start_due_scheduled(session, settings, followups)
    except Exception:
        # The campaigns already sending must not wait on the scheduled ones: dispatch anyway.
        log.exception("starting the scheduled campaigns failed; they are tried again next run")
    result = _dispatch(None, DISPATCH_BUDGET_SECONDS)
    if result["more"] and result["wait_reason"] is None:
        followups.dispatch()  # the budget ran out with work left: hand over to a fresh task
    return result


@celery_app.task(name="relance.update_campaign_status", acks_late=True)
def update_campaign_status(campaign_id: int) -> dict[str, Any]:
    """R1.1/R1.2: complete the campaign if every recipient is final. E1: errors change nothing."""
    try:
        with session_scope() as session:
            status = sweeps.update_campaign_status(session, campaign_id)
    except Exception:
        log.exception(
            "status check failed; status left unchanged", extra={"campaign_id": campaign_id}
        )
        return {"campaign_id": campaign_id, "error": True}
    return {"campaign_id": campaign_id, "status": status}


@celery_app.task(name="relance.update_campaign_statistics", acks_late=True)
def update_campaign_statistics(campaign_id: int) -> dict[str, Any]:
    """Recount a campaign's counters from its rows and repair any drift."""
    with session_scope() as session:
        drift = sweeps.reconcile_counters(session, campaign_id)
    return {"campaign_id": campaign_id, "repaired": sorted(drift)}


@celery_app.task(name="relance.check_sending_campaigns", acks_late=True)
def check_sending_campaigns() -> dict[str, Any]:
    """R2.1/R2.2: the Beat safety net over every campaign still sending."""
    with session_scope() as session:
        ids = sweeps.check_sending_campaigns(session, followups)
    return {"checked": ids}


@celery_app.task(name="relance.check_expired_interactions", acks_late=True)
def check_expired_interactions() -> dict[str, Any]:
    """E3: recipients whose reply window closed become no_interaction."""
    expired = 0
    while True:
        with session_scope() as session:
            n = sweeps.expire_windows(session)
        expired += n
        if n == 0:
            return {"expired": expired}


@celery_app.task(name="relance.recover_interrupted_campaigns", acks_late=True)
def recover_interrupted_campaigns() -> dict[str, Any]:
    """Messages a dead worker left ``sending``, after the grace period; then wake a dispatcher."""
    settings = get_settings()
    with session_scope(settings) as session:
        result = sweeps.recover_interrupted(session, settings)
    followups.dispatch()
    return result


APPLY_BUDGET_SECONDS = 20.0


@celery_app.task(name="relance.apply_webhooks", acks_late=True)
def apply_webhooks() -> dict[str, Any]:
    """Apply the webhook inbox in batches until it is empty (one applier at a time); Beat runs
    it every WEBHOOK_APPLY_INTERVAL_SECONDS too, in case a wake-up was lost."""
    settings = get_settings()
    result = inbox.drain(settings, followups, budget_seconds=APPLY_BUDGET_SECONDS)
    if result["more"]:
        followups.apply_webhooks()  # the budget ran out with entries left: a fresh task
    return result
