"""Faults an operator meets, mid-campaign, with servers the test owns (``tests/support/servers``).

Each test runs a campaign of ``RECIPIENTS`` contacts through the Meta adapter and the fake Cloud
API (``relance.fakes.graph``), which posts a signed ``sent`` status for every accepted send and
then, for every Message 1, the contact's signed reply; it retries a webhook until it is answered
200, as Meta does. relance runs as an operator runs it: the API, a worker, and two Beats at once
(one ticks, the other waits for the lease). Mid-campaign the test restarts PostgreSQL (fast),
Redis (without persistence: emptied), or the API (killed while webhooks flow).

Each ends with every recipient final (every contact replied, so ``message_2_sent``), the
campaign completed by itself, the provider's log showing each message accepted exactly once
(the outcome-unknown count is zero: every send's status webhook comes, README "What is
guaranteed"), and no webhook lost: every status and reply the fake posted is stored.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from relance.accounts.keys import create_api_key
from relance.config import load_settings
from relance.db import engine_for, session_scope
from relance.fakes.graph import Accepted, FakeGraph
from relance.migrate import upgrade
from relance.models import InboundEvent, Message
from relance.processes import Process, Processes, free_port, wait_for_http, wait_until
from tests.support.api import campaign_for_phones
from tests.support.engine import phone
from tests.support.servers import OwnPostgres, OwnRedis
from tests.support.stack import UNPACED, relance_command

RECIPIENTS = int(os.environ.get("FAULT_RECIPIENTS", "2000"))
SECRET = "fault-app-secret"
CAMPAIGN_SECONDS = 240  # launch to completed, faults included, on a slow CI machine
# Meta retries a webhook for days; the fake retries for two minutes, longer than any fault here.
WEBHOOK_ATTEMPTS = 600


def reply_to_message_1(accepted: Accepted) -> str | None:
    """Every contact answers its Message 1 (a template: no text body), never its Message 2."""
    return None if accepted.text else "oui"


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres().start()
    try:
        upgrade(url=server.url)
        yield server
    finally:
        engine_for(server.url).dispose()
        server.stop()


@pytest.fixture
def own_redis(processes: Processes) -> OwnRedis:
    return OwnRedis(processes).start()


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(
        app_secret=SECRET, replies=reply_to_message_1, webhook_attempts=WEBHOOK_ATTEMPTS
    )
    # A provider that takes a little time to answer: the campaign lasts long enough for a
    # fault to land in the middle of it.
    fake.delay = 0.02
    with fake:
        yield fake


class FaultStack:
    """relance's API, a worker and two Beats on the test's own servers."""

    def __init__(
        self,
        tmp_path: Path,
        processes: Processes,
        postgres: OwnPostgres,
        redis: OwnRedis,
        graph: FakeGraph,
    ) -> None:
        self.processes = processes
        self.postgres = postgres
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        graph.webhook_url = f"{self.base}/webhooks/meta"
        self.graph = graph
        self.env = {
            **os.environ,
            "DATABASE_URL": postgres.url,
            "BROKER_URL": redis.url,
            "RELANCE_DATA_DIR": str(tmp_path / "data"),
            "RELANCE_PROVIDER": "meta",
            "META_GRAPH_URL": graph.url,
            "META_PHONE_NUMBER_ID": "1234567890",
            "META_ACCESS_TOKEN": "test-token",
            "META_APP_SECRET": SECRET,
            "META_VERIFY_TOKEN": "fault-verify-token",
            "PUBLIC_URL": self.base,
            **UNPACED,
            "DISPATCH_INTERVAL_SECONDS": "1",
            "RECOVER_INTERVAL_SECONDS": "2",
            "CHECK_EXPIRED_INTERVAL_SECONDS": "2",
            "CHECK_SENDING_INTERVAL_SECONDS": "5",
            # A claim whose answer could not be recorded (the database was down) waits this
            # long for its status webhook before recovery may act: longer than any fault here.
            "SENDING_GRACE_SECONDS": "90",
            "PYTHONUNBUFFERED": "1",
        }
        self.api: Process | None = None
        self.tmp_path = tmp_path

    def start(self, role: str, *args: str, **env: str) -> Process:
        name = f"{role}-{len(self.processes.started)}"
        return self.processes.start(name, relance_command(role, *args), {**self.env, **env})

    def start_api(self) -> None:
        self.api = self.start("api", "--port", str(self.port))
        wait_for_http(f"{self.base}/health", 120, watch=[self.api])

    def start_engine(self) -> None:
        """A worker and two Beats (each with its own schedule file: two hosts)."""
        self.start("worker", "--concurrency", "2")
        for n in (1, 2):
            self.start("beat", RELANCE_DATA_DIR=str(self.tmp_path / f"beat-{n}"))

    def client(self) -> httpx.Client:
        settings = load_settings(database_url=self.postgres.url)
        with session_scope(settings) as session:
            key = create_api_key(session, "faults")
        return httpx.Client(
            base_url=self.base, timeout=60, headers={"Authorization": f"Bearer {key}"}
        )

    def essential(self) -> list[Process]:
        """What must stay up: the API and workers. A Beat that finds its lease taken while the
        database was away stops by design (Compose restarts it); at least one must stay."""
        return [p for p in self.processes.started if p.alive() and not p.name.startswith("beat")]


def run_with_fault(
    stack: FaultStack,
    when: Callable[[FakeGraph], bool],
    fault: Callable[[FaultStack], None],
) -> dict[str, Any]:
    stack.start_api()
    client = stack.client()
    phones = [phone(10_000 + i) for i in range(RECIPIENTS)]
    cid = campaign_for_phones(client, phones, "faults", message_2="Merci !",
                              reply_window_seconds=3600)  # fmt: skip
    stack.start_engine()
    assert client.post(f"/api/campaigns/{cid}/launch").status_code == 200
    wait_until(lambda: when(stack.graph), CAMPAIGN_SECONDS, "the fault's moment",
               watch=stack.essential())  # fmt: skip
    assert len(stack.graph.accepted) < 2 * RECIPIENTS, "the campaign ended before the fault"
    fault(stack)

    def completed() -> dict[str, Any] | None:
        stats: dict[str, Any] = client.get(f"/api/campaigns/{cid}/stats").json()
        return stats if stats["completed"] else None

    stats = wait_until(
        completed,
        CAMPAIGN_SECONDS,
        f"campaign {cid} to complete by itself",
        interval=0.5,
        watch=stack.essential(),
        ignore=(httpx.HTTPError, KeyError),
    )
    wait_until(
        stack.graph.webhooks_posted, 120, "the fake's last webhooks", watch=stack.essential()
    )
    assert any(p.alive() for p in stack.processes.started if p.name.startswith("beat"))
    check_outcome(stack, stats)
    return stats


def check_outcome(stack: FaultStack, stats: dict[str, Any]) -> None:
    graph = stack.graph
    # Every recipient final: each replied, so each got its Message 2.
    assert stats["message_2_sent"] == RECIPIENTS, stats
    # Each message accepted exactly once; each contact got exactly two (Message 1 and 2).
    sends = graph.sends_per_message()
    assert len(sends) == 2 * RECIPIENTS
    assert max(sends.values()) == 1, {k: v for k, v in sends.items() if v > 1}
    assert set(Counter(a.to for a in graph.accepted).values()) == {2}
    # No webhook lost: every status and reply the fake posted was stored, once.
    assert graph.webhooks_lost == 0
    assert graph.replies_posted == RECIPIENTS
    with session_scope(load_settings(database_url=stack.postgres.url)) as session:
        stored = dict(
            session.execute(
                select(InboundEvent.kind, func.count()).group_by(InboundEvent.kind)
            ).all()
        )
        sent = session.scalar(
            select(func.count()).select_from(Message).where(Message.sent_at.is_not(None))
        )
    assert stored == {"status": 2 * RECIPIENTS, "message:text": RECIPIENTS}, stored
    assert sent == 2 * RECIPIENTS


def third_sent(graph: FakeGraph) -> bool:
    return len(graph.accepted) >= RECIPIENTS * 2 // 3


def test_postgres_restarts_mid_campaign(
    tmp_path: Path,
    processes: Processes,
    own_postgres: OwnPostgres,
    own_redis: OwnRedis,
    graph: FakeGraph,
) -> None:
    stack = FaultStack(tmp_path, processes, own_postgres, own_redis, graph)
    run_with_fault(stack, third_sent, lambda s: s.postgres.restart())
    assert graph.webhook_refusals > 0, "no webhook met the restart: the fault missed"


def test_redis_restarts_empty_mid_campaign(
    tmp_path: Path,
    processes: Processes,
    own_postgres: OwnPostgres,
    own_redis: OwnRedis,
    graph: FakeGraph,
) -> None:
    stack = FaultStack(tmp_path, processes, own_postgres, own_redis, graph)
    run_with_fault(stack, third_sent, lambda s: own_redis.restart())


def test_the_api_killed_while_webhooks_flow(
    tmp_path: Path,
    processes: Processes,
    own_postgres: OwnPostgres,
    own_redis: OwnRedis,
    graph: FakeGraph,
) -> None:
    stack = FaultStack(tmp_path, processes, own_postgres, own_redis, graph)

    def restart_api(s: FaultStack) -> None:
        assert s.api is not None
        s.api.kill()
        s.start_api()

    run_with_fault(stack, lambda g: g.replies_posted >= RECIPIENTS // 3, restart_api)
    assert graph.webhook_refusals > 0, "no webhook met the restart: the fault missed"
