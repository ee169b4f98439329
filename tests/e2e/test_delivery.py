"""Delivery guarantees with real processes on PostgreSQL + Redis (SPEC 3, issue on pacing).

The provider is the Meta adapter talking to a local fake Cloud API that records every accepted
send and posts ``sent`` status webhooks back, as Meta does.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from relance.auth import create_api_key
from relance.config import load_settings
from relance.db import session_scope
from relance.fakes.graph import FakeGraph
from relance.processes import Process, Processes, free_port, wait_for_http, wait_until
from relance.providers.meta_webhooks import message_payload, sign
from tests.support.api import campaign_for_phones, wait_completed
from tests.support.engine import phone

SECRET = "e2e-app-secret"


class Stack:
    """relance's API, workers and Beat for one test, on the shared process helpers."""

    def __init__(self, processes: Processes, env: dict[str, str], port: int) -> None:
        self.processes = processes
        self.env = env
        self.port = port

    def start(self, role: str, *args: str) -> Process:
        name = f"{role}-{len(self.processes.started)}"
        command = [sys.executable, "-m", "relance", role, *args]
        return self.processes.start(name, command, self.env, inherit_env=False)

    def start_api(self) -> httpx.Client:
        """Start the API and answer a client holding a fresh API key once it is up."""
        self.start("api", "--port", str(self.port))
        base = f"http://127.0.0.1:{self.port}"
        wait_for_http(f"{base}/health", 60, watch=self.processes.started)
        with session_scope(load_settings(database_url=self.env["DATABASE_URL"])) as session:
            key = create_api_key(session, "e2e")
        return httpx.Client(base_url=base, timeout=30, headers={"Authorization": f"Bearer {key}"})

    def running(self) -> list[Process]:
        """The processes to watch: a wait fails at once if one of them dies (not the killed)."""
        return [p for p in self.processes.started if p.alive()]

    def wait(self, condition: Callable[[], object], timeout: float, what: str) -> None:
        wait_until(condition, timeout, what, watch=self.running())


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph(app_secret=SECRET) as fake:
        yield fake


def _env(
    tmp_path: Path, pg_url: str, redis_url: str, graph: FakeGraph, port: int, **extra: str
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": pg_url,
        "BROKER_URL": redis_url,
        "RELANCE_DATA_DIR": str(tmp_path / "data"),
        "RELANCE_PROVIDER": "meta",
        "META_GRAPH_URL": graph.url,
        "META_PHONE_NUMBER_ID": "1234567890",
        "META_ACCESS_TOKEN": "test-token",
        "META_APP_SECRET": SECRET,
        "META_VERIFY_TOKEN": "e2e-verify-token",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "SEND_DELAY_SECONDS": "0",
        "BATCH_PAUSE_SECONDS": "0",
        "MAX_SENDS_PER_SECOND": "0",
        "DAILY_QUOTA": "0",
        "DISPATCH_INTERVAL_SECONDS": "1",
        "RECOVER_INTERVAL_SECONDS": "1",
        "CHECK_EXPIRED_INTERVAL_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def _campaign(client: httpx.Client, first: int, n: int, message_2: str | None = None) -> int:
    phones = [phone(i) for i in range(first, first + n)]
    return campaign_for_phones(client, phones, f"c{first}", message_2=message_2)


def _each_accepted_once(graph: FakeGraph, n: int) -> None:
    """Every message, and every contact's Message 1, reached the provider exactly once."""
    sends = graph.sends_per_message()
    assert len(sends) == n
    assert max(sends.values()) == 1, {k: v for k, v in sends.items() if v > 1}
    assert sorted(Counter(a.to for a in graph.accepted).values()) == [1] * n


def test_worker_killed_mid_campaign_sends_each_message_once(
    tmp_path: Path, pg_url: str, redis_url: str, graph: FakeGraph, processes: Processes
) -> None:
    """SIGKILL a worker in the middle of 1,000 sends: after recovery every recipient is final
    and the provider accepted each message exactly once (webhooks match the in-flight ones)."""
    port = free_port()
    graph.delay = 0.004
    env = _env(
        tmp_path,
        pg_url,
        redis_url,
        graph,
        port,
        SENDING_GRACE_SECONDS="3",
        UNKNOWN_OUTCOME_POLICY="resend",
    )
    graph.webhook_url = f"http://127.0.0.1:{port}/webhooks/meta"
    stack = Stack(processes, env, port)
    client = stack.start_api()
    cid = _campaign(client, 0, 1000)
    victim = stack.start("worker", "--concurrency", "2")
    assert client.post(f"/api/campaigns/{cid}/launch").status_code == 200
    stack.wait(lambda: len(graph.accepted) >= 300, 120, "300 sends")
    victim.kill()
    assert len(graph.accepted) < 1000, "the worker finished before it could be killed"
    stack.start("worker", "--concurrency", "2")
    stack.start("beat")
    stats = wait_completed(client, cid, 180, watch=stack.running())
    assert stats["done"] == 1000
    # Message 1s are created as they are claimed: never two for one contact either.
    _each_accepted_once(graph, 1000)


def test_rate_limit_storm_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, pg_url: str, redis_url: str, graph: FakeGraph, processes: Processes
) -> None:
    """Every third request answers 429 (130429): messages are re-queued, none lost, none twice."""
    port = free_port()
    graph.rate_limit = lambda n: n % 3 == 0
    env = _env(tmp_path, pg_url, redis_url, graph, port)
    stack = Stack(processes, env, port)
    client = stack.start_api()
    cid = _campaign(client, 2000, 300)
    stack.start("worker", "--concurrency", "2")
    stack.start("beat")
    assert client.post(f"/api/campaigns/{cid}/launch").status_code == 200
    stats = wait_completed(client, cid, 180, watch=stack.running())
    assert graph.rejected > 50
    assert stats["done"] == 300
    assert stats["failed"] == 0
    _each_accepted_once(graph, 300)


def test_pacing_holds_across_workers_and_message_2_overtakes(
    tmp_path: Path, pg_url: str, redis_url: str, graph: FakeGraph, processes: Processes
) -> None:
    """Two workers, two campaigns, one sender: sends are >= SEND_DELAY apart, each batch is
    followed by its pause, and a reply's Message 2 goes before the waiting Message 1s."""
    port = free_port()
    delay, batch, pause = 0.1, 8, 0.6
    env = _env(
        tmp_path,
        pg_url,
        redis_url,
        graph,
        port,
        SEND_DELAY_SECONDS=str(delay),
        BATCH_SIZE=str(batch),
        BATCH_PAUSE_SECONDS=str(pause),
        MAX_SENDS_PER_SECOND="80",
    )
    stack = Stack(processes, env, port)
    client = stack.start_api()
    first = _campaign(client, 3000, 20, message_2="Merci !")
    second = _campaign(client, 4000, 20, message_2="Merci !")
    stack.start("worker", "--concurrency", "2")
    stack.start("worker", "--concurrency", "2")
    stack.start("beat")
    assert client.post(f"/api/campaigns/{first}/launch").status_code == 200
    assert client.post(f"/api/campaigns/{second}/launch").status_code == 200
    stack.wait(lambda: len(graph.accepted) >= 3, 60, "the first sends")
    replier = graph.accepted[0]
    _reply(client, replier.to, replier.wamid)
    stack.wait(lambda: len(graph.accepted) >= 40 + 1, 120, "every send")
    processes.stop_all()
    times = sorted(a.at for a in graph.accepted)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    jitter = 0.03  # HTTP transport between the worker's paced slot and the fake's clock
    assert min(gaps) >= delay - jitter, gaps
    long_gaps = sum(1 for g in gaps if g >= pause - jitter)
    assert long_gaps >= len(times) // batch - 1, gaps
    order = [a for a in sorted(graph.accepted, key=lambda a: a.at)]
    m2_index = next(i for i, a in enumerate(order) if a.text == "Merci !")
    m1_after = sum(1 for a in order[m2_index:] if a.text != "Merci !")
    assert m1_after > 10, "the Message 2 should overtake the Message 1s still waiting"


def _reply(client: httpx.Client, to_digits: str, context_wamid: str) -> None:
    body = json.dumps(
        message_payload(
            [
                {
                    "from": to_digits,
                    "id": f"wamid.IN{context_wamid}",
                    "timestamp": str(int(time.time())),
                    "type": "text",
                    "text": {"body": "oui"},
                    "context": {"id": context_wamid},
                }
            ]
        )
    ).encode()
    r = client.post(
        "/webhooks/meta",
        content=body,
        headers={"X-Hub-Signature-256": sign(body, SECRET), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
