"""Fan-out at launch and the status check on the same big campaign (in this process)."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from relance.bench import cpu
from relance.bench.env import BenchEnv
from relance.bench.probe import time_statements
from relance.bench.report import Figure, Report, percentile
from relance.bench.seed import make_campaign, make_category
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign
from relance.campaigns.sweeps import update_campaign_status
from relance.db import session_scope
from relance.models import Campaign, Message

FANOUT_TARGET = 100_000.0
STATUS_TARGET_MS = 5.0


def fanout(env: BenchEnv, report: Report, recipients: int) -> int:
    """``launch_campaign`` on N contacts, commit included; returns the campaign id.

    The launch writes the recipients only (``messages_created`` reports 0): each Message 1 is
    created when a dispatcher claims it, which the dispatch figure measures.
    """
    settings = env.settings
    with session_scope(settings) as session:
        category = make_category(session, "bench-fanout", 1, recipients)
        campaign_id = make_campaign(session, "bench fan-out", category_ids=[category])
    engine = env.engine()
    cpu_before = cpu.snapshot(env)
    with time_statements(engine) as statements:
        start = time.perf_counter()
        with session_scope(settings) as session:
            launch_campaign(session, settings, RecordingFollowups(), campaign_id)
        elapsed = time.perf_counter() - start
    cpu_used = cpu.utilisation(cpu_before, cpu.snapshot(env))
    with session_scope(settings) as session:
        total = session.scalar(select(Campaign.total).where(Campaign.id == campaign_id)) or 0
        messages = session.scalar(
            select(func.count()).select_from(Message).where(Message.campaign_id == campaign_id)
        )
    value = recipients / elapsed
    limit = report.limits["copy_rows_per_s"]
    report.add(
        Figure(
            "fanout_recipients_per_s",
            value,
            "recipients/s",
            limit,
            "raw INSERT ... SELECT rows/s into a scratch recipients table (SQLite)"
            if env.opts.embedded
            else "raw COPY rows/s into a scratch recipients table",
            ">= 100,000/s (1M in < 15 s)",
            value >= FANOUT_TARGET and total == recipients,
        ),
        recipients=recipients,
        seconds=round(elapsed, 3),
        recipients_created=total,
        messages_created=messages,
        rows_per_s=round((total + (messages or 0)) / elapsed),
        projected_1m_seconds=round(1_000_000 / value, 1),
        statements=statements.count,
        slowest_statements=statements.top(),
        cpu_percent_of_one_core=cpu_used,
    )
    return campaign_id


def status_check(env: BenchEnv, report: Report, campaign_id: int, calls: int) -> None:
    """``update_campaign_status`` in its own unit of work, as the task runs it."""
    settings = env.settings
    samples = []
    with time_statements(env.engine()) as statements:
        for _ in range(calls):
            start = time.perf_counter()
            with session_scope(settings) as session:
                update_campaign_status(session, campaign_id)
            samples.append((time.perf_counter() - start) * 1000)
    with session_scope(settings) as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        size, status = campaign.total, campaign.status
    p50, p99 = percentile(samples, 50), percentile(samples, 99)
    report.add(
        Figure(
            "status_check_ms_at_1m",
            p99,
            "ms (p99)",
            report.limits["select_pk_p99_ms"],
            "raw SELECT 1 by primary key, p99 ms",
            "< 5 ms",
            p99 < STATUS_TARGET_MS,
        ),
        recipients=size,
        campaign_status=status,
        calls=calls,
        p50_ms=round(p50, 3),
        p99_ms=round(p99, 3),
        max_ms=round(max(samples), 3),
        statements_per_call=round(statements.count / calls, 2),
    )
