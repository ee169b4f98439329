"""Delivery guarantees with real processes on PostgreSQL + Redis (SPEC 3, issue on pacing).

The provider is the Meta adapter talking to a local fake Cloud API that records every accepted
send and posts ``sent`` status webhooks back, as Meta does.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from relance.auth import create_api_key
from relance.config import load_settings
from relance.db import session_scope
from relance.runner import free_port
from tests.support.engine import phone
from tests.support.fake_graph import FakeGraph

SECRET = "e2e-app-secret"


class Services:
    """API, workers and Beat as subprocesses, each in its own process group."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, role: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp_path / f"{role}-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "relance", role, *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((role, proc))
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the whole group: the worker and its pool children die mid-work."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-25:])
            for p in sorted(self.tmp_path.glob("*.log"))
        )


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, services: Services | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{services.logs() if services else ''}")


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    fake = FakeGraph(app_secret=SECRET)
    yield fake
    fake.close()


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


def _client(env: dict[str, str], port: int) -> httpx.Client:
    settings = load_settings(database_url=env["DATABASE_URL"])
    with session_scope(settings) as session:
        key = create_api_key(session, "e2e")
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"Authorization": f"Bearer {key}"}
    )


def _campaign(
    client: httpx.Client, first: int, n: int, message_2: str | None = None, window: int = 600
) -> int:
    csv = "phone,first_name\n" + "".join(f"{phone(i)},C{i}\n" for i in range(first, first + n))
    r = client.post("/api/contacts/import", files={"file": ("c.csv", csv, "text/csv")})
    assert r.status_code == 200, r.text
    ids = [
        c["id"]
        for c in client.get("/api/contacts", params={"limit": 1000, "search": ""}).json()["items"]
    ]
    wanted = {phone(i) for i in range(first, first + n)}
    ids = []
    offset = 0
    while True:
        page = client.get("/api/contacts", params={"limit": 1000, "offset": offset}).json()
        ids += [c["id"] for c in page["items"] if c["phone"] in wanted]
        offset += 1000
        if offset >= page["total"]:
            break
    r = client.post(
        "/api/campaigns",
        json={
            "name": f"c{first}",
            "message_1": "Bonjour {first_name}",
            "message_2": message_2,
            "contact_ids": ids,
            "reply_window_seconds": window,
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _stats(client: httpx.Client, cid: int) -> dict[str, Any]:
    return client.get(f"/api/campaigns/{cid}/stats").json()  # type: ignore[no-any-return]


def test_worker_killed_mid_campaign_sends_each_message_once(
    tmp_path: Path, pg_url: str, redis_url: str, graph: FakeGraph
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
    services = Services(tmp_path, env)
    try:
        services.start("api", "--port", str(port))
        client = _client(env, port)
        wait_for(lambda: _up(client), 60, "the API", services)
        cid = _campaign(client, 0, 1000)
        victim = services.start("worker", "--concurrency", "2")
        assert client.post(f"/api/campaigns/{cid}/launch").status_code == 200
        t0 = time.monotonic()
        wait_for(lambda: len(graph.accepted) >= 300, 120, "300 sends", services)
        print("300 sends after", time.monotonic() - t0)
        services.kill(victim)
        killed_at = len(graph.accepted)
        assert killed_at < 1000, "the worker finished before it could be killed"
        services.start("worker", "--concurrency", "2")
        services.start("beat")
        stats = wait_for(
            lambda: (s := _stats(client, cid))["completed"] and s,
            180,
            "the campaign to complete",
            services,
        )
        print("completed after", time.monotonic() - t0, "accepted", len(graph.accepted))
        assert stats["done"] == 1000
        sends = graph.sends_per_message()
        assert len(sends) == 1000
        assert max(sends.values()) == 1, {k: v for k, v in sends.items() if v > 1}
        # Message 1s are created as they are claimed: never two for one contact either.
        assert sorted(Counter(a.to for a in graph.accepted).values()) == [1] * 1000
    finally:
        services.stop_all()


def test_rate_limit_storm_loses_nothing_and_duplicates_nothing(
    tmp_path: Path, pg_url: str, redis_url: str, graph: FakeGraph
) -> None:
    """Every third request answers 429 (130429): messages are re-queued, none lost, none twice."""
    port = free_port()
    graph.rate_limit = lambda n: n % 3 == 0
    env = _env(tmp_path, pg_url, redis_url, graph, port)
    services = Services(tmp_path, env)
    try:
        services.start("api", "--port", str(port))
        client = _client(env, port)
        wait_for(lambda: _up(client), 60, "the API", services)
        cid = _campaign(client, 2000, 300)
        services.start("worker", "--concurrency", "2")
        services.start("beat")
        assert client.post(f"/api/campaigns/{cid}/launch").status_code == 200
        stats = wait_for(
            lambda: (s := _stats(client, cid))["completed"] and s,
            180,
            "the campaign to complete",
            services,
        )
        assert graph.rejected > 50
        assert stats["done"] == 300
        assert stats["failed"] == 0
        sends = graph.sends_per_message()
        assert len(sends) == 300
        assert max(sends.values()) == 1
        assert sorted(Counter(a.to for a in graph.accepted).values()) == [1] * 300
    finally:
        services.stop_all()


def test_pacing_holds_across_workers_and_message_2_overtakes(
    tmp_path: Path, pg_url: str, redis_url: str, graph: FakeGraph
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
    services = Services(tmp_path, env)
    try:
        services.start("api", "--port", str(port))
        client = _client(env, port)
        wait_for(lambda: _up(client), 60, "the API", services)
        first = _campaign(client, 3000, 20, message_2="Merci !")
        second = _campaign(client, 4000, 20, message_2="Merci !")
        services.start("worker", "--concurrency", "2")
        services.start("worker", "--concurrency", "2")
        services.start("beat")
        assert client.post(f"/api/campaigns/{first}/launch").status_code == 200
        assert client.post(f"/api/campaigns/{second}/launch").status_code == 200
        wait_for(lambda: len(graph.accepted) >= 3, 60, "the first sends", services)
        replier = graph.accepted[0]
        _reply(client, replier.to, replier.wamid)
        wait_for(lambda: len(graph.accepted) >= 40 + 1, 120, "every send", services)
    finally:
        services.stop_all()
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


def _up(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.HTTPError:
        return False


def _reply(client: httpx.Client, to_digits: str, context_wamid: str) -> None:
    import json

    from relance.providers.meta_webhooks import message_payload, sign

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
