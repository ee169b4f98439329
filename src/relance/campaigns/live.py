"""Live campaign stats for Server-Sent Events, bounded per process.

Every open stream used to poll the database twice a second on its own: 300 streams made
``/health`` take a second and ``/stats`` fifteen. Here one poller per campaign per process reads
the stats and every stream of that campaign waits for its news; the number of open streams is
capped (``MAX_EVENT_STREAMS``), and each stream ends after ``EVENT_STREAM_MAX_SECONDS`` with a
``retry:`` field so that the browser reconnects by itself (a proxy cuts long streams anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from relance.campaigns.domain import CampaignStatus
from relance.errors import NotFound

log = logging.getLogger(__name__)
FINAL = frozenset({CampaignStatus.COMPLETED.value, CampaignStatus.CANCELLED.value})
POLL_SECONDS = 0.5
KEEP_ALIVE_SECONDS = 15.0
RECONNECT_MS = 3000

StatsReader = Callable[[int], dict[str, Any]]


class StreamsFull(Exception):
    """Every stream slot of this process is taken."""


@dataclass
class _Feed:
    """What the poller of one campaign last read, and a way to wait for the next change."""

    payload: str
    final: bool
    version: int = 0
    listeners: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def publish(self, payload: str, final: bool) -> None:
        self.payload, self.final = payload, final
        self.version += 1
        waiting, self.changed = self.changed, asyncio.Event()
        waiting.set()


class EventStream(StreamingResponse):
    """``text/event-stream`` that always closes its generator and gives its slot back."""

    def __init__(self, events: AsyncGenerator[str, None], release: Callable[[], None]) -> None:
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.events = events
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.events.aclose()
            self.release()


def _encode(stats: dict[str, Any]) -> tuple[str, bool]:
    return json.dumps(jsonable_encoder(stats)), stats["status"] in FINAL


@dataclass
class LiveStats:
    """The streams of one process: a poller per followed campaign, a cap on open streams."""

    read: StatsReader
    max_streams: int
    max_seconds: float
    poll_seconds: float = POLL_SECONDS
    open_streams: int = 0
    _feeds: dict[int, _Feed] = field(default_factory=dict)

    async def open(self, campaign_id: int) -> EventStream:
        """A stream of the campaign's stats: 404 (NotFound) or 503 (StreamsFull) before it starts.

        The slot is taken here and given back when the response ends, however it ends (even
        when the client left before the first byte and the event generator never started).
        """
        if self.open_streams >= self.max_streams:
            raise StreamsFull
        self.open_streams += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open_streams -= 1

        try:
            stats = await run_in_threadpool(self.read, campaign_id)
        except BaseException:
            release()
            raise
        return EventStream(self._events(campaign_id, *_encode(stats)), release)

    async def _events(
        self, campaign_id: int, payload: str, final: bool
    ) -> AsyncGenerator[str, None]:
        feed = self._join(campaign_id, payload, final)
        try:
            yield f"retry: {RECONNECT_MS}\n\n"
            loop = asyncio.get_running_loop()
            ends_at = loop.time() + self.max_seconds
            seen = -1
            while True:
                if feed.version != seen:
                    seen = feed.version
                    yield f"event: stats\ndata: {feed.payload}\n\n"
                if feed.final:
                    yield "event: end\ndata: {}\n\n"
                    return
                left = ends_at - loop.time()
                if left <= 0:
                    return  # the browser reconnects after ``retry``
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        feed.changed.wait(), timeout=min(KEEP_ALIVE_SECONDS, left)
                    )
                    continue
                yield ": keep-alive\n\n"
        finally:
            self._leave(campaign_id, feed)

    def _join(self, campaign_id: int, payload: str, final: bool) -> _Feed:
        feed = self._feeds.get(campaign_id)
        if feed is None:
            feed = self._feeds[campaign_id] = _Feed(payload, final)
        feed.listeners += 1
        if feed.task is None and not feed.final:
            feed.task = asyncio.get_running_loop().create_task(self._poll(campaign_id, feed))
        return feed

    def _leave(self, campaign_id: int, feed: _Feed) -> None:
        feed.listeners -= 1
        if feed.listeners == 0:
            if feed.task is not None:
                feed.task.cancel()
            if self._feeds.get(campaign_id) is feed:
                del self._feeds[campaign_id]

    async def _poll(self, campaign_id: int, feed: _Feed) -> None:
        while feed.listeners > 0 and not feed.final:
            await asyncio.sleep(self.poll_seconds)
            try:
                stats = await run_in_threadpool(self.read, campaign_id)
            except NotFound:  # deleted while followed: nothing more will come
                feed.publish(feed.payload, True)
                return
            except Exception:  # a database hiccup: the next poll tries again
                log.warning("reading live stats failed", exc_info=True)
                continue
            payload, final = _encode(stats)
            if payload != feed.payload or final:
                feed.publish(payload, final)
