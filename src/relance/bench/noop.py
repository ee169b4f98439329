"""The no-op Celery task whose round trip is the dispatch and latency figures' limit.

It registers on the engine's Celery app (``relance worker -I relance.bench.noop``), so it goes
through the same broker, the same worker, the same pool and the same settings (``acks_late``)
as the engine's tasks. It does the least a task can do and still be counted: one ``O_APPEND``
write to a file (a byte to count, or its latency to measure), which works on both brokers.
"""

from __future__ import annotations

import os
import time

from relance.worker import celery_app

NOOP_TASK = "relance.bench.noop"


def noop(path: str, sent_at: float | None = None) -> None:
    """Append one byte, or the seconds since ``sent_at`` on a line of its own."""
    line = b"." if sent_at is None else f"{time.time() - sent_at:.6f}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# Registered without decorator syntax: Celery is untyped, and the function stays typed.
noop_task = celery_app.task(name=NOOP_TASK)(noop)
