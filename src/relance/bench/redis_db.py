"""A Redis database of its own for each bench run, on the local server.

Two runs at once (a developer's bench beside a test suite that runs the bench's own test)
must not share a broker: each would execute the other's tasks, and a flush by one would drop
the other's queue. A run claims the first database of ``CANDIDATES`` that has no live owner
(``SET owner NX`` with a TTL a keeper thread renews) and holds no one else's data, and
flushes it when done. A run killed outright leaves its marker: the next run may take it back
once the owner key has expired.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from typing import Any

import redis

from relance.bench.errors import BenchError

SERVER = "redis://127.0.0.1:6379"
CANDIDATES = (14, 13, 12, 11, 10, 9, 8)  # the tests use 15
OWNER = "relance:bench:owner"
USED = "relance:bench:used"  # this database belongs to the bench, whoever left it
OWNER_TTL = 120
RENEW_EVERY = 20.0


class ClaimedRedis:
    """One claimed database; ``release`` flushes it and lets it go."""

    def __init__(self, server: str = SERVER) -> None:
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        for db in CANDIDATES:
            client: Any = redis.Redis.from_url(f"{server}/{db}", socket_connect_timeout=3)
            try:
                claimed = self._claim(client)
            except redis.RedisError as exc:
                client.close()
                raise BenchError(f"Redis is not reachable at {server}: {exc}") from exc
            if claimed:
                self.url = f"{server}/{db}"
                self._client = client
                self._keeper = threading.Thread(target=self._renew, daemon=True)
                self._keeper.start()
                return
            client.close()
        raise BenchError(
            f"no free Redis database among {CANDIDATES} on {server}: one bench run takes one"
        )

    def _claim(self, client: Any) -> bool:
        if not client.set(OWNER, self.token, nx=True, ex=OWNER_TTL):
            return False  # another run is using it right now
        leftovers = [key for key in client.scan_iter(count=1000) if key != OWNER.encode()]
        if leftovers and not client.exists(USED):
            client.delete(OWNER)  # someone else's data: not the bench's to take
            return False
        for i in range(0, len(leftovers), 1000):
            client.delete(*leftovers[i : i + 1000])  # what a killed run left behind
        client.set(USED, "1")
        return True

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            with contextlib.suppress(redis.RedisError):
                self._client.expire(OWNER, OWNER_TTL)

    def release(self) -> None:
        self._stop.set()
        self._keeper.join(5)
        with contextlib.suppress(redis.RedisError):
            if self._client.get(OWNER) == self.token.encode():
                self._client.flushdb()
        self._client.close()
