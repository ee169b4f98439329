"""Celery Beat's scheduler for ``relance beat``: it sends a due task only while it holds the
Beat lease.

The lease keeper (``leases.watch``) notices a dropped PostgreSQL connection within
``CHECK_SECONDS``; a second Beat may take the lease sooner, right after a restart. Asking the
lease before each send closes that window: a Beat whose lease is not held right now skips the
tick (the entry waits for its next period), so two Beats never send the same period.
"""

from __future__ import annotations

import logging
from types import FrameType
from typing import Any

from celery import platforms
from celery.apps.beat import Beat
from celery.beat import PersistentScheduler, ScheduleEntry, Service

from relance.leases import FileLease, PostgresLease

log = logging.getLogger(__name__)
_lease: FileLease | PostgresLease | None = None


def hold(lease: FileLease | PostgresLease) -> None:
    """The lease this process's Beat ticks under."""
    global _lease
    _lease = lease


def may_tick() -> bool:
    """A file lease cannot drop; a PostgreSQL one must still be up on its connection."""
    return not isinstance(_lease, PostgresLease) or _lease.alive()


class LeasedScheduler(PersistentScheduler):  # type: ignore[misc]
    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        if not may_tick():
            log.warning("beat: the lease is not held right now; %s skips this tick", entry.name)
            return
        super().apply_entry(entry, producer=producer)


class StopOnceBeat(Beat):  # type: ignore[misc]
    """Celery's Beat program, stopped once: a second SIGTERM (``relance up`` stops its children
    after its process group got the first) no longer raises ``SystemExit`` in the middle of the
    first one's exit, where Python prints it as a traceback."""

    def install_sync_handler(self, service: Service) -> None:
        def _sync(signum: int, frame: FrameType | None) -> None:
            platforms.signals.ignore("SIGTERM", "SIGINT")
            service.sync()
            raise SystemExit()

        platforms.signals.update(SIGTERM=_sync, SIGINT=_sync)
