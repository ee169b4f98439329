"""A campaign's results at full size: recipients pages and the CSV export (in this process).

Runs on the fan-out's campaign (N recipients) after its states are spread as a finished
campaign's would be (most without an answer, a quarter answered, a tenth failed), so that
every filter has rows to find.

* ``recipients_page_p99_ms``: one page of 50 (``recipient_list.page``, what the endpoint
  runs) in its own transaction, p99 over first pages, pages walked on, and pages that start
  deep in the campaign, for the default order and each filter of the table; limit: a raw
  ``SELECT`` by primary key, p99. Sorting by a timestamp and the text search are reported in
  the details (they have no index of their own).
* ``export_rows_per_s``: the whole campaign through the export's generator (keyset batches of
  1,000, formula-safe CSV); limit: the database writing the same rows as CSV by itself (``COPY
  ... TO STDOUT`` on PostgreSQL, a plain SELECT on SQLite). The bench process's RSS growth
  over the export is in the details, and its target (< 50 MB) is part of ``met``.
"""

from __future__ import annotations

import os
import time

from sqlalchemy import func, select, text

from relance.bench import cpu
from relance.bench.env import BenchEnv
from relance.bench.report import Figure, Report, percentile
from relance.campaigns.domain import RecipientState
from relance.campaigns.paging import Key, Sort
from relance.campaigns.recipient_list import RecipientFilter, page
from relance.campaigns.result_endpoints import CSV_COLUMNS, recipient_rows
from relance.csv_export import lines
from relance.db import session_scope
from relance.models import Recipient

PAGE_TARGET_MS = 50.0
RSS_TARGET_MB = 50.0
S = RecipientState
MB = 1024 * 1024


def spread_states(env: BenchEnv, campaign_id: int) -> None:
    """Give the queued recipients a finished campaign's states, by id (one UPDATE)."""
    now = "CURRENT_TIMESTAMP"
    with env.engine().begin() as conn:
        conn.execute(
            text(
                "UPDATE recipients SET "
                "state = CASE WHEN id % 10 = 0 THEN 'failed' "
                "WHEN id % 4 = 1 THEN 'message_2_sent' ELSE 'no_interaction' END, "
                f"awaiting_reply_at = {now}, "
                f"replied_at = CASE WHEN id % 4 = 1 AND id % 10 <> 0 THEN {now} END, "
                f"message_2_sent_at = CASE WHEN id % 4 = 1 AND id % 10 <> 0 THEN {now} END, "
                "reply_text = CASE WHEN id % 4 = 1 AND id % 10 <> 0 THEN 'Oui merci' END, "
                f"no_interaction_at = CASE WHEN id % 4 <> 1 AND id % 10 <> 0 THEN {now} END, "
                f"failed_at = CASE WHEN id % 10 = 0 THEN {now} END, "
                "last_error_code = CASE WHEN id % 10 = 0 THEN "
                "CASE WHEN id % 20 = 0 THEN '131049' ELSE '131026' END END, "
                "last_error = CASE WHEN id % 10 = 0 THEN '131026: Message Undeliverable' END "
                "WHERE campaign_id = :campaign"
            ),
            {"campaign": campaign_id},
        )
    # As autovacuum would after a real campaign's churn: the UPDATE left a dead row version
    # behind each recipient, which index scans would otherwise visit.
    if env.engine().dialect.name == "postgresql":
        with env.engine().connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                text("VACUUM (ANALYZE) recipients")
            )


def _walk(
    env: BenchEnv, campaign_id: int, where: RecipientFilter, start: Key | None, pages: int
) -> list[float]:
    """``pages`` pages in a row from ``start``, each timed in its own transaction."""
    samples: list[float] = []
    after = start
    for _ in range(pages):
        began = time.perf_counter()
        with session_scope(env.settings) as session:
            _rows, after = page(session, campaign_id, where, after, 50)
        samples.append((time.perf_counter() - began) * 1000)
        if after is None:
            break
    return samples


def recipients_pages(env: BenchEnv, report: Report, campaign_id: int, recipients: int) -> None:
    spread_states(env, campaign_id)
    with session_scope(env.settings) as session:
        last_id = session.scalar(
            select(func.max(Recipient.id)).where(Recipient.campaign_id == campaign_id)
        )
    deep = Key(None, int(last_id or 0) - 500)  # 500 ids before the end: the last pages
    filters = {
        "all": RecipientFilter(),
        "all, newest first": RecipientFilter(sort=Sort("id", descending=True)),
        "failed": RecipientFilter(states=(S.FAILED,)),
        "message_2_sent": RecipientFilter(states=(S.MESSAGE_2_SENT,)),
        "failed + message_2_sent": RecipientFilter(states=(S.FAILED, S.MESSAGE_2_SENT)),
        "failed, code 131049": RecipientFilter(states=(S.FAILED,), error_codes=("131049",)),
        "code 131026": RecipientFilter(error_codes=("131026",)),
    }
    per_filter: dict[str, dict[str, float]] = {}
    everything: list[float] = []
    rounds = 2 if env.opts.quick else 4
    for name, where in filters.items():
        samples: list[float] = []
        for _ in range(rounds):
            samples += _walk(env, campaign_id, where, None, 25)
            samples += _walk(
                env, campaign_id, where, deep if not where.sort.descending else None, 5
            )
        everything += samples
        per_filter[name] = {
            "p50_ms": round(percentile(samples, 50), 3),
            "p99_ms": round(percentile(samples, 99), 3),
        }
    unindexed = {
        "sort -replied_at": RecipientFilter(sort=Sort("replied_at", descending=True)),
        "failed, sort -failed_at": RecipientFilter(
            states=(S.FAILED,), sort=Sort("failed_at", descending=True)
        ),
        "search 'oui'": RecipientFilter(search="oui"),
    }
    slower: dict[str, dict[str, float]] = {}
    for name, where in unindexed.items():
        samples = _walk(env, campaign_id, where, None, 3)
        slower[name] = {
            "p50_ms": round(percentile(samples, 50), 3),
            "max_ms": round(max(samples), 3),
        }
    p99 = percentile(everything, 99)
    report.add(
        Figure(
            "recipients_page_p99_ms",
            p99,
            "ms (p99)",
            report.limits["select_pk_p99_ms"],
            "raw SELECT 1 by primary key, p99 ms",
            "< 50 ms at 1,000,000 recipients",
            p99 < PAGE_TARGET_MS,
        ),
        recipients=recipients,
        pages=len(everything),
        page_size=50,
        by_filter=per_filter,
        not_indexed=slower,
    )


def _raw_export_rows_per_s(env: BenchEnv, campaign_id: int) -> float:
    """The database writing the campaign's rows as CSV by itself: the export's ceiling."""
    engine = env.engine()
    query = (
        "SELECT r.id, r.contact_id, c.phone, c.first_name, c.last_name, r.state, "
        "r.last_error_code, r.last_error, r.reply_text, r.queued_at, r.awaiting_reply_at, "
        "r.replied_at, r.message_2_sent_at, r.no_interaction_at, r.failed_at, r.cancelled_at, "
        "r.opted_out_at, r.done_at, r.window_closes_at FROM recipients r "
        f"LEFT JOIN contacts c ON c.id = r.contact_id WHERE r.campaign_id = {int(campaign_id)}"
    )
    raw = engine.raw_connection()
    try:
        cur = raw.driver_connection.cursor()  # type: ignore[union-attr]
        start = time.perf_counter()
        rows = 0
        if engine.dialect.name == "postgresql":
            with cur.copy(f"COPY ({query} ORDER BY r.id) TO STDOUT WITH (FORMAT csv)") as copy:
                for chunk in copy:
                    rows += bytes(chunk).count(b"\n")
        else:
            cur.execute(query + " ORDER BY r.id")
            while batch := cur.fetchmany(10_000):
                rows += len(batch)
        elapsed = time.perf_counter() - start
        raw.commit()
        return rows / elapsed if elapsed else 0.0
    finally:
        raw.close()


def export(env: BenchEnv, report: Report, campaign_id: int, recipients: int) -> None:
    limit = _raw_export_rows_per_s(env, campaign_id)
    pid = os.getpid()
    rss_before = cpu.tree_rss(pid)
    peak = rss_before
    rows = 0
    size = 0
    start = time.perf_counter()
    for i, chunk in enumerate(lines(CSV_COLUMNS, recipient_rows(campaign_id, RecipientFilter()))):
        size += len(chunk.encode())
        rows += chunk.count("\r\n")
        if i % 50 == 0:
            peak = max(peak, cpu.tree_rss(pid))
    elapsed = time.perf_counter() - start
    peak = max(peak, cpu.tree_rss(pid))
    rows -= 1  # the header
    growth = (peak - rss_before) / MB
    value = rows / elapsed
    report.add(
        Figure(
            "export_rows_per_s",
            value,
            "rows/s",
            limit,
            "the database writing the same rows as CSV (COPY ... TO STDOUT)"
            if env.engine().dialect.name == "postgresql"
            else "a plain SELECT of the same rows (SQLite)",
            "every row, RSS growth < 50 MB",
            rows == recipients and growth < RSS_TARGET_MB,
        ),
        recipients=recipients,
        rows=rows,
        seconds=round(elapsed, 2),
        megabytes=round(size / MB, 1),
        rss_growth_mb=round(growth, 1),
        rss_before_mb=round(rss_before / MB, 1),
    )
