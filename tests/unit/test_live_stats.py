"""Live stats streams (relance.campaigns.live): one poller per campaign, a cap, an end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relance.campaigns.live import RECONNECT_MS, EventStream, LiveStats, StreamsFull
from relance.errors import NotFound

POLL = 0.01


class FakeCampaigns:
    """Stats a test changes at will; counts the reads."""

    def __init__(self) -> None:
        self.stats: dict[int, dict[str, Any]] = {}
        self.reads = 0

    def read(self, campaign_id: int) -> dict[str, Any]:
        self.reads += 1
        if campaign_id not in self.stats:
            raise NotFound(f"campaign {campaign_id} not found")
        return dict(self.stats[campaign_id])


async def collect(stream: EventStream, into: list[str]) -> None:
    body: AsyncIterator[str] = stream.body_iterator  # type: ignore[assignment]
    try:
        async for chunk in body:
            into.append(str(chunk))
    finally:
        await stream.events.aclose()
        stream.release()


async def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(POLL)


def data_events(chunks: list[str]) -> list[str]:
    return [c for c in chunks if c.startswith("event: stats")]


def test_twenty_listeners_share_one_poller_and_see_every_state() -> None:
    async def scenario() -> None:
        db = FakeCampaigns()
        db.stats[7] = {"status": "sending", "sent": 0}
        live = LiveStats(db.read, max_streams=100, max_seconds=60, poll_seconds=POLL)
        outputs: list[list[str]] = [[] for _ in range(20)]
        tasks = [asyncio.create_task(collect(await live.open(7), out)) for out in outputs]
        await until(lambda: all(data_events(o) for o in outputs), "first stats")
        assert len(live._feeds) == 1
        feed = live._feeds[7]
        assert feed.listeners == 20 and feed.task is not None
        db.stats[7] = {"status": "sending", "sent": 5}
        await until(lambda: all(len(data_events(o)) == 2 for o in outputs), "the change")
        db.stats[7] = {"status": "completed", "sent": 5}
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        for out in outputs:
            assert out[0] == f"retry: {RECONNECT_MS}\n\n"
            assert [e.split("data: ")[1] for e in data_events(out)] == [
                '{"status": "sending", "sent": 0}\n\n',
                '{"status": "sending", "sent": 5}\n\n',
                '{"status": "completed", "sent": 5}\n\n',
            ]
            assert out[-1] == "event: end\ndata: {}\n\n"
        assert live.open_streams == 0 and live._feeds == {}

    asyncio.run(scenario())


def test_the_stream_cap_refuses_then_frees_its_slots() -> None:
    async def scenario() -> None:
        db = FakeCampaigns()
        db.stats[1] = {"status": "sending"}
        live = LiveStats(db.read, max_streams=2, max_seconds=60, poll_seconds=POLL)
        first, second = await live.open(1), await live.open(1)
        with pytest.raises(StreamsFull):
            await live.open(1)

        # A client gone before the first byte: the response ends, its slot comes back.
        async def gone(_: Any) -> None:
            raise OSError("client went away")

        with pytest.raises(Exception):  # noqa: B017 - Starlette wraps the OSError
            await first({"type": "http", "asgi": {"spec_version": "2.4"}}, _never, gone)
        assert live.open_streams == 1
        third = await live.open(1)
        for stream in (second, third):
            await stream.events.aclose()
            stream.release()
            stream.release()  # twice is once
        assert live.open_streams == 0
        with pytest.raises(NotFound):
            await live.open(99)
        assert live.open_streams == 0

    asyncio.run(scenario())


async def _never() -> dict[str, Any]:
    await asyncio.sleep(3600)
    return {}


def test_a_stream_ends_after_its_lifetime_and_when_the_campaign_is_deleted() -> None:
    async def scenario() -> None:
        db = FakeCampaigns()
        db.stats[3] = {"status": "draft"}
        live = LiveStats(db.read, max_streams=5, max_seconds=0.2, poll_seconds=POLL)
        out: list[str] = []
        await asyncio.wait_for(collect(await live.open(3), out), 10)
        assert out[0].startswith("retry:") and len(data_events(out)) == 1
        assert "event: end" not in "".join(out)  # not final: the browser reconnects
        live.max_seconds = 60
        out = []
        task = asyncio.create_task(collect(await live.open(3), out))
        await until(lambda: data_events(out), "first stats")
        del db.stats[3]
        await asyncio.wait_for(task, 10)
        assert out[-1] == "event: end\ndata: {}\n\n"

    asyncio.run(scenario())
