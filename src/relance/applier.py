"""The inbox applier: a thread of each worker's main process that applies the webhook inbox as
soon as the API appends to it.

The API's group commit sends ``NOTIFY relance_inbox`` with each batch of appends; this loop
LISTENs on a connection of its own and drains the inbox on each notification (appliers of
several workers take turns: ``inbox.apply_batch`` holds an advisory lock). Waking it through
Celery put the apply behind whatever tasks the pool was running (seconds behind a paced
dispatch). The Beat task ``apply_webhooks`` stays as the safety net; on SQLite (inline ingest)
there is nothing to listen to and the loop is not started.
"""

from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy.engine import make_url

from relance.campaigns import inbox
from relance.campaigns.followups import Followups
from relance.config import Settings
from relance.metrics.recorder import recorder

log = logging.getLogger(__name__)
CHANNEL = "relance_inbox"
DRAIN_BUDGET_SECONDS = 5.0


def start(settings: Settings, followups: Followups) -> threading.Event | None:
    """Start the loop (PostgreSQL with the inbox only); set the returned event to stop it."""
    if settings.is_embedded or settings.ingest_mode != "inbox":
        return None
    stop = threading.Event()
    threading.Thread(
        target=_run, args=(settings, followups, stop), name="inbox-applier", daemon=True
    ).start()
    return stop


def _dsn(settings: Settings) -> str:
    url = make_url(settings.effective_database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _run(settings: Settings, followups: Followups, stop: threading.Event) -> None:
    interval = settings.webhook_apply_interval_seconds
    while not stop.is_set():
        try:
            with psycopg.connect(_dsn(settings), autocommit=True) as conn:
                conn.execute(f"LISTEN {CHANNEL}")
                # LISTEN first, then drain: an append committed in between still notifies us.
                while not stop.is_set():
                    inbox.drain(settings, followups, budget_seconds=DRAIN_BUDGET_SECONDS)
                    # This thread counts the webhook events it applies: no task ends here to
                    # carry them to /metrics.
                    recorder.flush_if_due(settings)
                    for _ in conn.notifies(timeout=interval, stop_after=1):
                        pass  # a wake-up; notifications of the same drain coalesce here
        except Exception:  # the database went away: try again, Beat's task covers meanwhile
            log.exception("the inbox applier stopped; restarting it")
            stop.wait(interval)
