"""Group commit of the webhook route's appends: one INSERT and one commit for every request
that arrived while the previous commit was being written.

At thousands of single-event webhooks a second, a commit per request costs a round trip and a
WAL flush each, and a session per request costs Python work each. Here each request queues its
entry and waits; one flush at a time per event loop writes everything queued so far. A lone
request waits for its own commit only; under load each commit carries many.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass, field

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, text

from relance.campaigns.inbox import Entry, append
from relance.config import Settings
from relance.db import get_engine

CHANNEL = "relance_inbox"  # what ``relance.applier`` listens to
MAX_ROWS = 1000
MAX_BYTES = 8 * 1024 * 1024  # one statement stays bounded whatever the bodies


@dataclass
class _Queue:
    waiting: list[tuple[Entry, asyncio.Future[None]]] = field(default_factory=list)
    flushing: asyncio.Task[None] | None = None
    # Kept between flushes (one flush at a time uses it): a pool checkout and its pre-ping
    # per flush cost as much as the INSERT. Dropped on any error; the next flush reconnects.
    connection: Connection | None = None


class GroupCommit:
    """Appends to the inbox of one database, committed in groups."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # Per event loop: a test client may run each request on a loop of its own.
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = (
            weakref.WeakKeyDictionary()
        )

    async def append(self, entry: Entry) -> None:
        """Return once ``entry`` is committed (raise what the database raised)."""
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(loop, _Queue())
        done: asyncio.Future[None] = loop.create_future()
        queue.waiting.append((entry, done))
        if queue.flushing is None or queue.flushing.done():
            queue.flushing = loop.create_task(self._flush(queue))
        await done

    async def _flush(self, queue: _Queue) -> None:
        while queue.waiting:
            batch = _take(queue)
            try:
                await run_in_threadpool(self._write, queue, [entry for entry, _ in batch])
            except Exception as exc:  # every request of the group fails (503): Meta retries
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _write(self, queue: _Queue, entries: list[Entry]) -> None:
        conn = queue.connection
        if conn is None or conn.closed or conn.invalidated:
            conn = queue.connection = get_engine(self.settings).connect()
        try:
            with conn.begin():
                append(conn, entries)
                if conn.dialect.name == "postgresql":
                    # Delivered at commit: wakes the workers' appliers (``relance.applier``).
                    conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
        except BaseException:
            queue.connection = None
            conn.close()  # back to the pool, or discarded if the database dropped it
            raise


def _take(queue: _Queue) -> list[tuple[Entry, asyncio.Future[None]]]:
    size = 0
    n = 0
    for entry, _ in queue.waiting:
        if n and (n >= MAX_ROWS or size + len(entry.body) > MAX_BYTES):
            break
        size += len(entry.body)
        n += 1
    batch, queue.waiting = queue.waiting[:n], queue.waiting[n:]
    return batch


_WRITERS: dict[str, GroupCommit] = {}


def writer_for(settings: Settings) -> GroupCommit:
    """The process's group commit for this database."""
    url = settings.effective_database_url
    if url not in _WRITERS:
        _WRITERS[url] = GroupCommit(settings)
    return _WRITERS[url]
