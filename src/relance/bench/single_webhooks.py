"""Single-event webhooks, as Meta mostly posts them: one signed status per request.

A closed-loop load generator (``load``) keeps ``CONCURRENCY`` keep-alive connections busy with
``delivered`` then ``read`` for each message, first against a bare FastAPI route that only
checks the HMAC (``bare_hmac``, the limit, same uvicorn options), then against ``relance api``.
The clock of ``webhook_single_requests_per_s`` stops at the last answer; the inbox is then
waited on until applied, and ``webhook_apply_lag_p99_s`` is read from its rows (accepted ->
applied, both stamped by relance). Every message must end ``read`` with every event stored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, select

from relance.bench import cpu, load
from relance.bench.env import PHONE_NUMBER_ID, BenchEnv
from relance.bench.errors import BenchError
from relance.bench.report import Figure, Report, percentile
from relance.bench.webhooks import signed
from relance.db import session_scope
from relance.models import InboundEvent, Message, WebhookInbox
from relance.processes import free_port, wait_for_port, wait_until
from relance.providers.meta_webhooks import status_payload

SINGLE_TARGET = 3000.0
RATIO_TARGET = 0.3
P99_TARGET = 0.05
LAG_TARGET = 2.0
CONCURRENCY = 16
PATH = "/webhooks/meta"


def _requests(port: int, rows: Sequence[Any]) -> list[bytes]:
    stamp = str(int(time.time()))
    out = []
    for status in ("delivered", "read"):
        for message_id, wamid, phone in rows:
            body, headers = signed(
                status_payload(
                    [
                        {
                            "id": wamid,
                            "status": status,
                            "timestamp": stamp,
                            "recipient_id": phone.lstrip("+"),
                            "biz_opaque_callback_data": str(message_id),
                        }
                    ],
                    PHONE_NUMBER_ID,
                )
            )
            out.append(load.request_bytes("127.0.0.1", port, PATH, body, headers))
    return out


def bare_hmac_limit(env: BenchEnv, rows: Sequence[Any]) -> load.LoadResult:
    """The same requests against the bare HMAC route, in a process of its own."""
    port = free_port()
    proc = env.start("bare-hmac", "relance.bench.bare_hmac", str(port))
    try:
        wait_for_port("127.0.0.1", port, 30, watch=[proc], error=BenchError)
        load.run("127.0.0.1", port, _requests(port, rows[:200]), CONCURRENCY)  # warm-up
        return load.run("127.0.0.1", port, _requests(port, rows), CONCURRENCY)
    finally:
        env.processes.stop(proc)


def _inbox_since(env: BenchEnv, first_id: int) -> tuple[int, list[float]]:
    """Unapplied entries since ``first_id``, and the accepted -> applied lag of the applied."""
    with session_scope(env.settings) as session:
        rows = session.execute(
            select(WebhookInbox.received_at, WebhookInbox.applied_at).where(
                WebhookInbox.id > first_id
            )
        ).all()
    lags = [(applied - received).total_seconds() for received, applied in rows if applied]
    return len(rows) - len(lags), lags


def single_ingest(
    env: BenchEnv, report: Report, api_url: str, rows: Sequence[Any], bare: load.LoadResult
) -> None:
    port = urlsplit(api_url).port or 80
    requests = _requests(port, rows)
    with session_scope(env.settings) as session:
        first_id = session.scalar(select(func.coalesce(func.max(WebhookInbox.id), 0))) or 0
        stored_before = session.scalar(select(func.count()).select_from(InboundEvent)) or 0
    cpu_before = cpu.snapshot(env)
    result = load.run("127.0.0.1", port, requests, CONCURRENCY)
    cpu_used = cpu.utilisation(cpu_before, cpu.snapshot(env))
    answered = time.perf_counter()
    inline = env.settings.ingest_mode != "inbox"
    if not inline:
        wait_until(
            lambda: _inbox_since(env, first_id)[0] == 0,
            120,
            "the inbox applied",
            watch=env.procs.values(),
            error=BenchError,
        )
    drained_after = time.perf_counter() - answered
    _, lags = _inbox_since(env, first_id)
    ids = [message_id for message_id, _, _ in rows]
    with session_scope(env.settings) as session:
        read = session.scalar(
            select(func.count()).where(Message.id.in_(ids), Message.status == "read")
        )
        stored = (session.scalar(select(func.count()).select_from(InboundEvent)) or 0) - int(
            stored_before
        )
    lost = max(len(requests) - stored, len(rows) - int(read or 0), len(requests) - result.ok)
    rate = result.ok / result.seconds
    bare_rate = bare.ok / bare.seconds
    p99 = percentile(result.latencies, 99)
    bare_p99 = percentile(bare.latencies, 99)
    lag_p99 = percentile(lags, 99)
    details = {
        "requests": len(requests),
        "concurrent_connections": CONCURRENCY,
        "statuses": {str(k): v for k, v in result.statuses.items()},
        "seconds": round(result.seconds, 3),
        "p50_s": round(percentile(result.latencies, 50), 4),
        "bare_hmac_requests_per_s": round(bare_rate, 1),
        "bare_hmac_p99_s": round(bare_p99, 4),
        "single_row_inserts_per_s": report.limits.get("single_row_inserts_per_s"),
        "inbox_applied_seconds_after_last_answer": round(drained_after, 3),
        "ingest_mode": env.settings.ingest_mode,
        "lost": lost,
        "cpu_percent_of_one_core": cpu_used,
    }
    report.add(
        Figure(
            "webhook_single_requests_per_s",
            rate,
            "requests/s",
            bare_rate,
            f"bare FastAPI route checking the HMAC, same uvicorn ({CONCURRENCY} connections)",
            ">= 3,000 requests/s and >= 0.3 of the bare route, none lost",
            rate >= SINGLE_TARGET and rate >= RATIO_TARGET * bare_rate and lost == 0,
        ),
        **details,
    )
    report.add(
        Figure(
            "webhook_single_p99_s",
            p99,
            "s (p99)",
            bare_p99,
            "the bare HMAC route's p99 under the same load",
            "p99 < 50 ms",
            p99 < P99_TARGET,
        )
    )
    report.add(
        Figure(
            "webhook_apply_lag_p99_s",
            lag_p99 if not inline else 0.0,
            "s (p99)",
            report.limits.get("noop_round_trip_p99_s", float("nan")),
            "no-op Celery round trip p99 (work handed to a worker)",
            "p99 < 2 s, accepted -> applied",
            (inline or lag_p99 < LAG_TARGET) and lost == 0,
        ),
        applied_entries=len(lags),
        p50_s=round(percentile(lags, 50), 4) if lags else None,
        max_s=round(max(lags), 4) if lags else None,
    )
