"""``single_row_inserts_per_s``: the floor under the webhook inbox, measured in the same run.

``concurrency`` connections each INSERT one row per transaction (autocommit) into a scratch
table shaped like ``webhook_inbox`` (same columns and partial indexes), for ``seconds``: what
one commit per webhook request would allow at best, with PostgreSQL grouping the WAL flushes
of concurrent commits itself. Driver only (psycopg), no ORM, no pool. PostgreSQL only.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import psycopg
from sqlalchemy import Engine

SCRATCH = "bench_inbox_scratch"
BODY = b"x" * 600  # about one signed single-status Cloud API body


def _dsn(engine: Engine) -> str:
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def single_row_inserts_per_s(engine: Engine, concurrency: int = 16, seconds: float = 3.0) -> float:
    dsn = _dsn(engine)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
        conn.execute(
            f"CREATE TABLE {SCRATCH} (id bigserial PRIMARY KEY, provider varchar(20) NOT NULL, "
            "body bytea NOT NULL, url text, received_at timestamptz NOT NULL, "
            "applied_at timestamptz, error text)"
        )
        conn.execute(f"CREATE INDEX ON {SCRATCH} (id) WHERE applied_at IS NULL")
        conn.execute(f"CREATE INDEX ON {SCRATCH} (received_at) WHERE applied_at IS NULL")
    counts = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    deadline: list[float] = [0.0]

    def insert(slot: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            start.wait()
            n = 0
            while time.perf_counter() < deadline[0]:
                conn.execute(
                    f"INSERT INTO {SCRATCH} (provider, body, received_at) VALUES (%s, %s, %s)",
                    ("meta", BODY, datetime.now(UTC)),
                )
                n += 1
            counts[slot] = n

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    try:
        return sum(counts) / elapsed
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
