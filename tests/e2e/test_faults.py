"""Faults an operator meets, mid-campaign, with servers the test owns (``tests/support/servers``).

Each test runs a campaign of ``RECIPIENTS`` contacts through the Meta adapter and the fake Cloud
API (``relance.fakes.graph``), which posts a signed ``sent`` status for every accepted send and
then, for every tenth Message 1, the contact's signed reply; it retries a webhook until it is
answered 200, as Meta does. relance runs as an operator runs it: the API, a worker, and two Beats
at once (one ticks, the other waits for the lease). Mid-campaign the test restarts PostgreSQL
(fast), Redis (without persistence: emptied), or the API (killed while webhooks flow).

Each ends with every recipient final (``message_2_sent`` for those who replied, else
``no_interaction`` when the window closed), the campaign completed by itself, the provider's log
showing each message accepted exactly once (the outcome-unknown count is zero: every send's
status webhook comes, README "What is guaranteed"), no webhook lost (every status and reply the
fake posted is stored), and ``/metrics`` agreeing with the database.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from relance.accounts.keys import create_api_key
from relance.config import load_settings
from relance.db import engine_for, session_scope
from relance.fakes.graph import FakeGraph
from relance.fakes.graph_webhooks import Accepted
from relance.migrate import upgrade
from relance.models import InboundEvent, Message
from relance.processes import Process, Processes, free_port, wait_for_http, wait_until
from tests.support.api import campaign_for_phones
from tests.support.engine import phone
from tests.support.servers import OwnPostgres, OwnRabbitMQ, OwnRedis
from tests.support.stack import UNPACED, relance_command

RECIPIENTS = int(os.environ.get("FAULT_RECIPIENTS", "2000"))
FIRST_PHONE = 10_000
REPLY_EVERY = 10
# Long enough for a reply to come back through the fault; the others then end no_interaction.
REPLY_WINDOW_SECONDS = 45
SECRET = "fault-app-secret"
CAMPAIGN_SECONDS = 240  # launch to completed, faults included, on a slow CI machine
# Meta retries a webhook for days; the fake retries for two minutes, longer than any fault here.
WEBHOOK_ATTEMPTS = 600
METRICS_TOKEN = "fault-metrics-token"
# Webhooks waiting in the fake go up to this many in one body, as Meta batches them under load.
WEBHOOK_BATCH = 20


def reply_to_message_1(accepted: Accepted) -> str | None:
    """Every REPLY_EVERY-th contact answers its Message 1 (a template: no text body), nobody
    answers a Message 2. (All answering would queue a send task per reply at once: a burst no
    real campaign makes, which would measure the worker's speed, not the fault.)"""
    contact = int(accepted.to[-8:]) - FIRST_PHONE
    return "oui" if not accepted.text and contact % REPLY_EVERY == 0 else None


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
def own_rabbitmq(processes: Processes) -> Iterator[OwnRabbitMQ]:
    server = OwnRabbitMQ(processes).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(
        app_secret=SECRET,
        replies=reply_to_message_1,
        webhook_attempts=WEBHOOK_ATTEMPTS,
        webhook_batch=WEBHOOK_BATCH,
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
        broker_url: str,
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
            "BROKER_URL": broker_url,
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
            "METRICS_TOKEN": METRICS_TOKEN,
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
    counted_webhooks: bool = True,
) -> dict[str, Any]:
    started = time.monotonic()

    def mark(what: str) -> None:  # the timeline, shown with -s or when the test fails
        graph = stack.graph
        print(
            f"{time.monotonic() - started:7.1f} s  {what}  accepted={len(graph.accepted)} "
            f"webhooks waiting={graph._webhooks_pending} refused={graph.webhook_refusals}"
        )

    stack.start_api()
    mark("api up")
    client = stack.client()
    phones = [phone(FIRST_PHONE + i) for i in range(RECIPIENTS)]
    cid = campaign_for_phones(client, phones, "faults", message_2="Merci !",
                              reply_window_seconds=REPLY_WINDOW_SECONDS)  # fmt: skip
    mark("campaign created")
    stack.start_engine()
    assert client.post(f"/api/campaigns/{cid}/launch").status_code == 200
    mark("launched")
    wait_until(lambda: when(stack.graph), CAMPAIGN_SECONDS, "the fault's moment",
               watch=stack.essential())  # fmt: skip
    assert len(stack.graph.accepted) < RECIPIENTS, "Message 1 was all sent before the fault"
    mark("fault")
    fault(stack)
    mark("fault over")

    seen: dict[str, Any] = {}

    def completed() -> dict[str, Any] | None:
        seen.update(client.get(f"/api/campaigns/{cid}/stats").json())
        if int(time.monotonic() - started) % 10 == 0:
            mark(f"stats {seen.get('counts', seen)}")
        return seen if seen["completed"] else None

    try:
        stats = wait_until(
            completed,
            CAMPAIGN_SECONDS,
            f"campaign {cid} to complete by itself",
            interval=0.5,
            watch=stack.essential(),
            ignore=(httpx.HTTPError, KeyError),
        )
    except TimeoutError as exc:
        blocking = client.get(f"/api/campaigns/{cid}/blocking").json()
        fake = {
            "accepted": len(stack.graph.accepted),
            "replies": stack.graph.replies_posted,
            "refusals": stack.graph.webhook_refusals,
            "webhooks posted": stack.graph.webhooks_posted(),
        }
        raise TimeoutError(f"{exc}\nstats {seen}\nfake {fake}\nblocking {blocking}") from None
    mark("completed")
    wait_until(
        stack.graph.webhooks_posted, 120, "the fake's last webhooks", watch=stack.essential()
    )
    assert any(p.alive() for p in stack.processes.started if p.name.startswith("beat"))
    check_outcome(stack, stats)
    check_metrics(stack, client, stats, webhooks_counted=counted_webhooks)
    mark("checked")
    return stats


def check_outcome(stack: FaultStack, stats: dict[str, Any]) -> None:
    """Every recipient final; each message accepted once; every webhook stored once."""
    graph = stack.graph
    with session_scope(load_settings(database_url=stack.postgres.url)) as session:
        stored = dict(
            session.execute(
                select(InboundEvent.kind, func.count()).group_by(InboundEvent.kind)
            ).all()
        )
        answered = session.scalar(
            select(func.count())
            .select_from(InboundEvent)
            .where(InboundEvent.outcome == "message_2_queued")
        )
        sent = session.scalar(
            select(func.count()).select_from(Message).where(Message.sent_at.is_not(None))
        )
    replied = stats["message_2_sent"]
    # Every recipient final: it replied in its window and got Message 2, or its window closed.
    assert replied + stats["no_interaction"] == RECIPIENTS and stats["failed"] == 0, stats
    # Every reply the fake posted was stored; those that came in time were answered (a reply
    # held up by the fault past its window is a late reply: stored, not answered).
    assert graph.webhooks_lost == 0
    assert graph.replies_posted == RECIPIENTS // REPLY_EVERY
    assert stored == {"status": RECIPIENTS + replied, "message:text": graph.replies_posted}, stored
    assert answered == replied and replied > graph.replies_posted // 2, (answered, stats)
    # Each message accepted by the provider exactly once: a Message 1 per contact, and a
    # Message 2 per answered reply. No outcome was left unknown (every status came).
    sends = graph.sends_per_message()
    assert max(sends.values()) == 1, {k: v for k, v in sends.items() if v > 1}
    assert len(sends) == sent == RECIPIENTS + replied
    per_contact = Counter(Counter(a.to for a in graph.accepted).values())
    expected = Counter({1: RECIPIENTS - replied, 2: replied})
    assert per_contact == +expected  # (+ drops a zero count)


def scraped(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200, answer.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:  # fmt: skip
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def check_metrics(
    stack: FaultStack, client: httpx.Client, stats: dict[str, Any], webhooks_counted: bool
) -> None:
    """What the processes counted, added up across them, says what the database says. Counts
    reach the database within seconds of being made (the workers keep running tasks)."""
    expected_sends = RECIPIENTS + stats["message_2_sent"]
    expected_events = expected_sends + stack.graph.replies_posted

    def matches() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        samples = scraped(client)
        sent = total(samples, "relance_sends_total", outcome="sent")
        events = sum(
            v for (n, ls), v in samples.items()
            if n == "relance_webhook_events_total" and ("outcome", "duplicate") not in ls
        )  # fmt: skip
        ok = sent == expected_sends and (not webhooks_counted or events == expected_events)
        last.update(sent=sent, events=events, expected=(expected_sends, expected_events))
        return samples if ok else None

    last: dict[str, object] = {}

    def failure(why: str) -> AssertionError:
        return AssertionError(f"{why}\nlast scrape: {last}")

    samples = wait_until(matches, 60, "the metrics to match the database", interval=1,
                         ignore=(httpx.HTTPError,), error=failure)  # fmt: skip
    dispatcher = {"task": "relance.send_campaign_messages", "state": "success"}
    assert total(samples, "relance_task_duration_seconds_count", **dispatcher) > 0
    assert total(samples, "relance_provider_latency_seconds_count") >= expected_sends
    assert total(samples, "relance_campaigns", status="completed") == 1
    assert total(samples, "relance_due_messages") == 0


def third_sent(graph: FakeGraph) -> bool:
    return len(graph.accepted) >= RECIPIENTS // 3


def test_postgres_restarts_mid_campaign(
    tmp_path: Path,
    processes: Processes,
    own_postgres: OwnPostgres,
    own_redis: OwnRedis,
    graph: FakeGraph,
) -> None:
    stack = FaultStack(tmp_path, processes, own_postgres, own_redis.url, graph)
    run_with_fault(stack, third_sent, lambda s: s.postgres.restart())
    assert graph.webhook_refusals > 0, "no webhook met the restart: the fault missed"


def test_redis_restarts_empty_mid_campaign(
    tmp_path: Path,
    processes: Processes,
    own_postgres: OwnPostgres,
    own_redis: OwnRedis,
    graph: FakeGraph,
) -> None:
    stack = FaultStack(tmp_path, processes, own_postgres, own_redis.url, graph)
    run_with_fault(stack, third_sent, lambda s: own_redis.restart())
    workers = [p for p in processes.started if p.name.startswith("worker")]
    assert workers and workers[0].log_path is not None
    assert "Connection to broker lost" in workers[0].log_path.read_text(), "the fault missed"


def test_the_api_killed_while_webhooks_flow(
    tmp_path: Path,
    processes: Processes,
    own_postgres: OwnPostgres,
    own_redis: OwnRedis,
    graph: FakeGraph,
) -> None:
    stack = FaultStack(tmp_path, processes, own_postgres, own_redis.url, graph)

    def restart_api(s: FaultStack) -> None:
        assert s.api is not None
        s.api.kill()
        s.start_api()

    # The killed API's last counts (up to 2 s of them) die with it: webhooks are not compared.
    run_with_fault(
        stack,
        lambda g: g.replies_posted >= RECIPIENTS // REPLY_EVERY // 3,
        restart_api,
        counted_webhooks=False,
    )
    assert graph.webhook_refusals > 0, "no webhook met the restart: the fault missed"


def test_rabbitmq_restarts_mid_campaign(
    tmp_path: Path,
    processes: Processes,
    own_postgres: OwnPostgres,
    own_rabbitmq: OwnRabbitMQ,
    graph: FakeGraph,
) -> None:
    """The RabbitMQ variant of the broker (where the machine has it); the pacing store is then
    the database, as without Redis."""
    stack = FaultStack(tmp_path, processes, own_postgres, own_rabbitmq.url, graph)
    run_with_fault(stack, third_sent, lambda s: own_rabbitmq.restart())
    workers = [p for p in processes.started if p.name.startswith("worker")]
    assert workers and workers[0].log_path is not None
    assert "Connection to broker lost" in workers[0].log_path.read_text(), "the fault missed"
