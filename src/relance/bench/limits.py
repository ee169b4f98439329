"""The machine's limits, measured in the same run: raw database, raw Redis, a no-op Celery task.

Database limits use the driver directly (no ORM, no pool) on a scratch table shaped like
``recipients`` (same columns and indexes, no foreign keys), dropped at the end:

* ``copy_rows_per_s``: PostgreSQL ``COPY`` of N rows in one transaction (SQLite, which has
  no COPY: one ``INSERT ... SELECT`` over a generated series), the ceiling for the fan-out;
* ``update_rows_per_s``: ``UPDATE ... WHERE id = ANY(100 ids)``, one transaction per batch of
  100 rows (what one webhook POST of 100 statuses could cost at best), the webhook ceiling;
* ``select_pk_p50_ms`` / ``select_pk_p99_ms``: one ``SELECT 1`` by primary key in autocommit,
  the floor of any status check.

Celery limits use ``relance.bench.noop`` on the same broker and worker as the engine's tasks.
"""

from __future__ import annotations

import io
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from relance.bench.env import BenchEnv
from relance.bench.errors import BenchError
from relance.bench.noop import NOOP_TASK
from relance.bench.report import percentile
from relance.processes import wait_until

SCRATCH = "bench_scratch"
UPDATE_BATCH = 100


def _driver(engine: Engine) -> Any:
    raw = engine.raw_connection()
    return raw, raw.driver_connection


def database_limits(engine: Engine, rows: int, update_rows: int, selects: int) -> dict[str, float]:
    """COPY rows/s, batched UPDATE rows/s and SELECT-by-PK latency on a scratch table."""
    pg = engine.dialect.name == "postgresql"
    raw, conn = _driver(engine)
    try:
        cur = conn.cursor()
        if pg:
            cur.execute(
                f"CREATE TABLE {SCRATCH} (LIKE recipients INCLUDING INDEXES INCLUDING CONSTRAINTS)"
            )
        else:
            _sqlite_scratch(cur)
        conn.commit()
        out: dict[str, float] = {}
        try:
            out["copy_rows_per_s"] = _copy(conn, cur, rows, pg)
            out["update_rows_per_s"] = _update(conn, cur, rows, update_rows, pg)
            p50, p99 = _select_pk(conn, cur, rows, selects, pg)
            out["select_pk_p50_ms"], out["select_pk_p99_ms"] = p50, p99
        finally:
            conn.rollback()
            if pg:
                conn.autocommit = False
            cur.execute(f"DROP TABLE IF EXISTS {SCRATCH}")
            if not pg:
                cur.execute("PRAGMA foreign_keys=ON")
            conn.commit()
        return out
    finally:
        raw.close()


def _sqlite_scratch(cur: Any) -> None:
    """The recipients table's own DDL and indexes under another name; no foreign keys."""
    cur.execute("PRAGMA foreign_keys=OFF")
    ddl = [
        row[0]
        for row in cur.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'recipients' AND sql IS NOT NULL "
            "ORDER BY type DESC"  # the table before its indexes
        )
    ]
    for statement in ddl:
        cur.execute(statement.replace("recipients", SCRATCH))


def _copy(conn: Any, cur: Any, rows: int, pg: bool) -> float:
    stamp = datetime.now(UTC).isoformat()
    # The payload is built before the clock starts: the limit is the database's, not Python's.
    if pg:
        chunks = []
        for first in range(1, rows + 1, 50_000):
            buf = io.StringIO()
            for i in range(first, min(rows + 1, first + 50_000)):
                buf.write(f"{i}\t1\t{i}\tqueued\t{stamp}\n")
            chunks.append(buf.getvalue())
        start = time.perf_counter()
        with cur.copy(
            f"COPY {SCRATCH} (id, campaign_id, contact_id, state, queued_at) FROM STDIN"
        ) as copy:
            for chunk in chunks:
                copy.write(chunk)
        conn.commit()
        elapsed = time.perf_counter() - start
        cur.execute(f"ANALYZE {SCRATCH}")
        conn.commit()
        return rows / elapsed
    # SQLite has no COPY: its fastest bulk path is one INSERT ... SELECT, run in C.
    start = time.perf_counter()
    cur.execute(
        f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        f"INSERT INTO {SCRATCH} (id, campaign_id, contact_id, state, queued_at) "
        "SELECT i, 1, i, 'queued', ? FROM n",
        (rows, stamp.replace("T", " ").split("+")[0]),
    )
    conn.commit()
    return rows / (time.perf_counter() - start)


def _update(conn: Any, cur: Any, rows: int, update_rows: int, pg: bool) -> float:
    ids = random.Random(7).sample(range(1, rows + 1), min(rows, update_rows))
    batches = [ids[i : i + UPDATE_BATCH] for i in range(0, len(ids), UPDATE_BATCH)]
    stamp = datetime.now(UTC).isoformat()
    start = time.perf_counter()
    for batch in batches:
        if pg:
            cur.execute(
                f"UPDATE {SCRATCH} SET state = 'awaiting_reply', awaiting_reply_at = %s "
                "WHERE id = ANY(%s)",
                (stamp, batch),
            )
        else:
            marks = ",".join("?" * len(batch))
            cur.execute(
                f"UPDATE {SCRATCH} SET state = 'awaiting_reply', awaiting_reply_at = ? "
                f"WHERE id IN ({marks})",
                (stamp, *batch),
            )
        conn.commit()
    return len(ids) / (time.perf_counter() - start)


def _select_pk(conn: Any, cur: Any, rows: int, selects: int, pg: bool) -> tuple[float, float]:
    if pg:
        conn.autocommit = True
    mark = "%s" if pg else "?"
    pick = random.Random(11)
    samples = []
    for _ in range(selects):
        key = pick.randint(1, rows)
        start = time.perf_counter()
        cur.execute(f"SELECT 1 FROM {SCRATCH} WHERE id = {mark}", (key,))
        cur.fetchone()
        samples.append((time.perf_counter() - start) * 1000)
    if not pg:
        conn.commit()
    return percentile(samples, 50), percentile(samples, 99)


def redis_ops_per_s(env: BenchEnv, ops: int = 10_000) -> float:
    """Sequential INCR round trips per second on the bench's Redis."""
    client = env.redis()
    try:
        start = time.perf_counter()
        for _ in range(ops):
            client.incr("relance:bench:ops")
        elapsed = time.perf_counter() - start
        client.delete("relance:bench:ops")
        return ops / elapsed
    finally:
        client.close()


# Celery ----------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait_worker_ready(env: BenchEnv, timeout: float = 90.0) -> float:
    """Until the worker has run one no-op per pool process; returns how long that took."""
    path = env.tmp / "noop-ready"
    for _ in range(max(1, env.opts.workers) * 2):
        env.send_task(NOOP_TASK, str(path))
    start = time.perf_counter()
    wait_until(
        lambda: _size(path) >= env.opts.workers * 2,
        timeout,
        "the Celery worker to run its first tasks",
        0.05,
        watch=[env.procs["worker"]],
        error=BenchError,
    )
    return time.perf_counter() - start


def celery_noop_rate(env: BenchEnv, count: int) -> dict[str, float]:
    """No-op tasks completed per second: from the first publish until the last has run."""
    path = env.tmp / "noop-rate"
    start = time.perf_counter()
    for _ in range(count):
        env.send_task(NOOP_TASK, str(path))
    published = time.perf_counter() - start
    wait_until(
        lambda: _size(path) >= count, 60 + count / 100, "the no-op tasks", 0.005, error=BenchError
    )
    elapsed = time.perf_counter() - start
    return {"noop_tasks_per_s": count / elapsed, "noop_publish_per_s": count / published}


def celery_noop_latency(env: BenchEnv, samples: int, spacing: float) -> dict[str, float]:
    """Publish-to-run latency of a no-op task on an idle worker, ``spacing`` seconds apart."""
    path = env.tmp / "noop-latency"
    for _ in range(samples):
        env.send_task(NOOP_TASK, str(path), time.time())
        time.sleep(spacing)

    def lines() -> int:
        try:
            return path.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    wait_until(lambda: lines() >= samples, 60, "the no-op latency tasks", 0.01, error=BenchError)
    values = [float(x) for x in path.read_text().split()]
    os.unlink(path)
    return {
        "noop_round_trip_p50_s": percentile(values, 50),
        "noop_round_trip_p99_s": percentile(values, 99),
    }
