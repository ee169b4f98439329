"""The shared limiter (SPEC 3, anti-ban pacing): one pace for all workers, fails closed.

Several threads (and, for Redis, several processes) draw from one sender's budget at once;
the grants they receive must keep the configured delay between any two sends. When the
pacing store is down nothing is sent; when it is back everything is sent, once.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from relance.campaigns import claims
from relance.campaigns.dispatch import dispatch
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign
from relance.config import Settings
from relance.db import session_scope
from relance.models import Message, Recipient
from relance.pacing.domain import Grant, PacingRules
from relance.pacing.limiter import (
    DatabaseLimiter,
    LimiterUnavailable,
    RedisLimiter,
    rules_from,
)
from tests.support.engine import FakeProvider, make_campaign, seed_contacts

DELAY = 0.05
EPSILON = 1e-6  # float rounding of epoch seconds only
THREADS = 4
PER_WORKER = 12
REPO = Path(__file__).resolve().parents[2]


def paced_rules(**kwargs: float) -> PacingRules:
    values = {"send_delay": DELAY, "batch_size": 1000, "batch_pause": 0.0, **kwargs}
    return PacingRules(**values)  # type: ignore[arg-type]


def assert_spaced(times: list[float], gap: float) -> None:
    ordered = sorted(times)
    assert len(set(ordered)) == len(ordered), "two sends granted the same slot"
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    assert min(gaps) >= gap - EPSILON, f"grants {min(gaps):.6f}s apart, expected >= {gap}"


def grab_in_threads(reserve: Callable[[], object], n_threads: int, each: int) -> list[float]:
    """Every thread reserves ``each`` sends, all starting together; returns the grant times."""
    barrier = threading.Barrier(n_threads)
    results: list[list[float]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            barrier.wait(timeout=30)
            for _ in range(each):
                decision = reserve()
                assert isinstance(decision, Grant), decision
                assert decision.count == 1
                results[k].append(decision.at)
        except BaseException as exc:  # surfaced below, with the thread's traceback
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "a limiter worker hung"
    if errors:
        raise errors[0]
    return [t for r in results for t in r]


# Redis ------------------------------------------------------------------------------------------


def test_redis_limiter_spaces_sends_across_threads(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url, f"test:{uuid.uuid4().hex}", paced_rules())
    start = time.time()
    times = grab_in_threads(lambda: limiter.reserve(max_wait=60), THREADS, PER_WORKER)
    assert len(times) == THREADS * PER_WORKER
    assert_spaced(times, DELAY)
    assert min(times) >= start - EPSILON


def test_redis_limiter_batch_pause_across_threads(redis_url: str) -> None:
    rules = paced_rules(batch_size=5, batch_pause=0.3)
    limiter = RedisLimiter(redis_url, f"test:{uuid.uuid4().hex}", rules)
    times = sorted(grab_in_threads(lambda: limiter.reserve(max_wait=60), THREADS, 5))
    assert_spaced(times, DELAY)
    for k in range(5, len(times), 5):
        assert times[k] - times[k - 1] >= 0.3 - EPSILON


CHILD = """
import json, sys
import redis
from relance.pacing.domain import Grant, PacingRules
from relance.pacing.limiter import RedisLimiter

url, sender, go, ready, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
rules = PacingRules(send_delay=float(sys.argv[6]), batch_size=1000, batch_pause=0.0)
limiter = RedisLimiter(url, sender, rules)
client = redis.Redis.from_url(url)
client.rpush(ready, 1)
if client.blpop([go], timeout=30) is None:
    sys.exit("no start signal")
out = []
for _ in range(n):
    decision = limiter.reserve(max_wait=60)
    assert isinstance(decision, Grant), decision
    out.append(decision.at)
print(json.dumps(out))
"""


def test_redis_limiter_spaces_sends_across_processes(redis_url: str) -> None:
    """Two worker processes and two threads of this one share one pace (SPEC 3)."""
    sender = f"test:{uuid.uuid4().hex}"
    go, ready = f"{sender}:go", f"{sender}:ready"
    client = redis.Redis.from_url(redis_url)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                CHILD,
                redis_url,
                sender,
                go,
                ready,
                str(PER_WORKER),
                str(DELAY),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    try:
        for _ in children:  # both processes are up and connected
            assert client.blpop([ready], timeout=30) is not None, "a child did not start"
        limiter = RedisLimiter(redis_url, sender, paced_rules())
        client.rpush(go, *([1] * len(children)))
        local = grab_in_threads(lambda: limiter.reserve(max_wait=60), 2, PER_WORKER)
        remote: list[float] = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            remote.extend(json.loads(out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        client.close()
    assert len(remote) == 2 * PER_WORKER and len(local) == 2 * PER_WORKER
    assert_spaced(local + remote, DELAY)


# Database ---------------------------------------------------------------------------------------


def test_database_limiter_spaces_sends_across_threads(settings: Settings) -> None:
    limiter = DatabaseLimiter(settings, f"test:{uuid.uuid4().hex}", paced_rules())
    times = grab_in_threads(lambda: limiter.reserve(max_wait=60), THREADS, PER_WORKER)
    assert len(times) == THREADS * PER_WORKER
    assert_spaced(times, DELAY)
    assert limiter.state().next_at >= max(times) + DELAY - EPSILON


# Redis down: fail closed, then recover ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway redis-server of our own, on a port of our own."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        try:
            while True:
                assert self.proc.poll() is None, "redis-server exited at start"
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    threading.Event().wait(0.02)  # poll until the server answers
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
        self.proc = None


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    import shutil

    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (CI is set: a missing server is a failure)")
        pytest.skip("redis-server is not installed; install it to run this test")
    server = RedisServer(_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _pending_and_sent(settings: Settings, campaign_id: int) -> dict[str, int]:
    """Messages per status, and ``not_created`` for the queued recipients still waiting for
    their Message 1 row (the claim creates it)."""
    with session_scope(settings) as session:
        statuses = list(
            session.scalars(select(Message.status).where(Message.campaign_id == campaign_id))
        )
        not_created = session.scalar(
            select(func.count()).where(
                Recipient.campaign_id == campaign_id, *claims.message_1_due()
            )
        )
    out = {s: statuses.count(s) for s in set(statuses)}
    if not_created:
        out["not_created"] = not_created
    return out


def test_redis_down_fails_closed_then_sends_everything_once(
    settings: Settings, own_redis: RedisServer
) -> None:
    n = 6
    followups = RecordingFollowups()
    with session_scope(settings) as session:
        cat = seed_contacts(session, n)
        cid = make_campaign(session, [cat])
    with session_scope(settings) as session:
        launch_campaign(session, settings, followups, cid)
    limiter = RedisLimiter(own_redis.url, settings.sender_key, rules_from(settings))
    assert isinstance(limiter.reserve(max_wait=1), Grant)  # it works while the server is up

    own_redis.stop()
    with pytest.raises(LimiterUnavailable):
        limiter.reserve(max_wait=1)
    with pytest.raises(LimiterUnavailable):
        limiter.block(time.time() + 10)
    provider = FakeProvider()
    report = dispatch(settings, provider, limiter, followups, budget_seconds=5)
    assert provider.sent == []  # fails closed: never sends without the shared pace
    assert (report.sent, report.wait_reason, report.more) == (0, "limiter_unavailable", True)
    # Nothing claimed, nothing lost: every recipient still queued, no Message 1 row created.
    assert _pending_and_sent(settings, cid) == {"not_created": n}

    own_redis.start()  # the same port: the limiter reconnects by itself
    report = dispatch(settings, provider, limiter, followups, budget_seconds=10)
    ids = [m.message_id for m in provider.sent]
    assert len(ids) == len(set(ids)) == n
    assert report.sent == n
    assert _pending_and_sent(settings, cid) == {"sent": n}
    again = dispatch(settings, provider, limiter, followups, budget_seconds=5)
    assert again.sent == 0 and len(provider.sent) == n


# A rate limit answered during dispatch -----------------------------------------------------------


def test_rate_limit_during_dispatch_blocks_the_shared_limiter(settings: Settings) -> None:
    """A provider rate limit blocks the sender in the shared limiter and the message is sent
    once afterwards, without a duplicate. On SQLite (embedded mode) the database limiter
    shares the single writer lock with the transaction recording the outcomes."""
    from relance.providers.base import OutboundMessage, ProviderError, RateLimited

    followups = RecordingFollowups()
    with session_scope(settings) as session:
        cat = seed_contacts(session, 2)
        cid = make_campaign(session, [cat])
    with session_scope(settings) as session:
        launch_campaign(session, settings, followups, cid)
    limited: list[int] = []

    def once(message: OutboundMessage) -> ProviderError | None:
        if not limited:
            limited.append(message.message_id)
            return RateLimited("130429", "rate limit hit", retry_after=0.2)
        return None

    provider = FakeProvider(fail=once)
    limiter = DatabaseLimiter(settings, settings.sender_key, rules_from(settings))
    before = time.time()
    first = dispatch(settings, provider, limiter, followups, budget_seconds=10)
    assert first.retried == 1 and first.failed == 0
    assert limiter.state().blocked_until >= before + 0.2  # the whole sender backs off
    assert time.time() - before < 5, "recording the rate limit waited on a lock"
    deadline = time.monotonic() + 10
    while len(provider.sent) < 2 and time.monotonic() < deadline:
        dispatch(settings, provider, limiter, followups, budget_seconds=1)
    ids = [m.message_id for m in provider.sent]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == 2
    assert limited[0] in ids
    assert _pending_and_sent(settings, cid) == {"sent": 2}
