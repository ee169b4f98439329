"""Celery tasks with the plan's names: ids in, one service call, a small dict out.

Every task is idempotent (its service works by compare-and-set) and acknowledged late, so a
task delivered twice, or redelivered after its worker died, sends nothing twice.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import Any

from celery.signals import (
    task_postrun,
    task_prerun,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)

from relance import applier
from relance.campaigns import dispatch, inbox, launch, sweeps
from relance.config import get_settings
from relance.db import session_scope
from relance.metrics.recorder import TASK_DURATION, recorder
from relance.models import utcnow
from relance.pacing.limiter import make_limiter
from relance.providers.registry import get_provider
from relance.worker import celery_app

log = logging.getLogger(__name__)
DISPATCH_BUDGET_SECONDS = 20.0


class CeleryFollowups:
    """Followups published as Celery tasks (after the transaction commits).

    ``own_connection``: each publish on a connection of its own, for a thread beside a pool
    process's tasks (the inbox applier): through the shared producer pool, its messages sat
    unsent for seconds.
    """

    def __init__(self, own_connection: bool = False) -> None:
        self.own_connection = own_connection

    def _publish(self, task: Any, **options: Any) -> None:
        if not self.own_connection:
            task.apply_async(**options)
            return
        with celery_app.connection_for_write() as conn:
            task.apply_async(connection=conn, **options)

    def send_message(self, message_id: int) -> None:
        self._publish(send_single_message, args=[message_id])

    def check_status(self, campaign_id: int, countdown: float) -> None:
        # The plan, task 1.1: update_campaign_status.apply_async(..., countdown=5).
        self._publish(update_campaign_status, args=[campaign_id], countdown=countdown)

    def dispatch(self) -> None:
        self._publish(send_campaign_messages, expires=get_settings().dispatch_interval_seconds * 4)


followups = CeleryFollowups()
STOPPING = threading.Event()


@worker_shutting_down.connect
def _stop_dispatching(**_: Any) -> None:
    STOPPING.set()


@worker_ready.connect
def _start_applier(**_: Any) -> None:
    # A thread of the worker's main process, which only waits on its event loop: in a pool
    # process the applier shared the interpreter with the tasks and with billiard's wait for
    # the next one, and fell seconds behind while barely using the CPU. It publishes on
    # connections of its own (through the main process's producer, tasks waited unsent).
    applier.start(get_settings(), CeleryFollowups(own_connection=True))


_STARTED: dict[str, float] = {}  # task id -> when it started, in this process


@task_prerun.connect
def _task_started(task_id: str = "", **_: Any) -> None:
    _STARTED[task_id] = time.perf_counter()


@task_postrun.connect
def _task_finished(task_id: str = "", task: Any = None, state: str = "", **_: Any) -> None:
    """Its run time by task and state; then this process's counts go to the database if due
    (the next Beat tick runs a task, so nothing waits longer than a tick)."""
    started = _STARTED.pop(task_id, None)
    if started is not None and task is not None:
        outcome = "success" if state == "SUCCESS" else "failure"
        recorder.observe(
            TASK_DURATION, time.perf_counter() - started, task=task.name, state=outcome
        )
    recorder.flush_if_due(get_settings())


@worker_process_shutdown.connect  # a prefork pool process
@worker_shutdown.connect  # the worker itself (its thread pool, in embedded mode)
def _flush_metrics(**_: Any) -> None:
    recorder.flush(get_settings())


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
    """The safety net of the workers' appliers (``relance.applier``): Beat runs it every
    WEBHOOK_APPLY_INTERVAL_SECONDS; it applies the inbox in batches until it is empty."""
    settings = get_settings()
    return inbox.drain(settings, followups, budget_seconds=APPLY_BUDGET_SECONDS)


@celery_app.task(name="relance.refresh_meta_senders", acks_late=True)
def refresh_meta_senders() -> dict[str, Any]:
    """Each Cloud API number's messaging limit, quality and throughput, read from Meta."""
    from relance.senders.refresh import refresh_senders

    return {"senders": refresh_senders(get_settings())}


@celery_app.task(name="relance.purge_webhook_inbox", acks_late=True)
def purge_webhook_inbox() -> dict[str, Any]:
    """Applied inbox entries older than WEBHOOK_INBOX_KEEP_HOURS, deleted in short
    transactions (a big backlog never holds one long lock)."""
    settings = get_settings()
    before = utcnow() - timedelta(hours=settings.webhook_inbox_keep_hours)
    purged = 0
    while True:
        with session_scope(settings) as session:
            n = inbox.purge_applied(session, before)
        purged += n
        if n < inbox.PURGE_BATCH:
            return {"purged": purged}
