"""Dispatch end to end, and the worker's memory while it runs.

A campaign of M recipients is launched in this process (fan-out only: no task is queued), then
one ``send_campaign_messages`` per worker pool process is published and the clock runs until
the campaign's ``message_1_sent`` counter reaches M: the real worker subprocess created and
claimed every Message 1, handed it over HTTP to the fake Graph server and recorded the answer.
"""

from __future__ import annotations

import bisect
import threading
import time
from typing import Any

from sqlalchemy import func, select, text

from relance.bench import cpu
from relance.bench.env import BenchEnv
from relance.bench.errors import BenchError
from relance.bench.report import Figure, Report
from relance.bench.seed import campaign_value, make_campaign, make_category
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign
from relance.config import Settings
from relance.db import session_scope
from relance.models import Message, campaign_senders
from relance.processes import Process
from relance.senders import service
from relance.senders.identity import REF_FIELDS
from relance.senders.schemas import SenderCreate

DISPATCH_TARGET = 1000.0
STALL_SECONDS = 60.0
MIN_FIT_SAMPLES = 40
MIN_FIT_MESSAGES = 10_000
MB = 1024 * 1024


class RssSampler(threading.Thread):
    """Samples the worker tree's resident memory every ``interval`` seconds."""

    def __init__(self, proc: Process, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append((time.perf_counter(), cpu.tree_rss(self.proc.pid)))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)


def _db_stats(env: BenchEnv) -> dict[str, int]:
    if env.opts.embedded:
        return {}
    with env.engine().connect() as conn:
        row = conn.execute(
            text(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_fetched "
                "FROM pg_stat_database WHERE datname = current_database()"
            )
        ).one()
    return dict(zip(("commits", "inserted", "updated", "fetched"), map(int, row), strict=True))


def dispatch(env: BenchEnv, report: Report, messages: int) -> int:
    """The dispatch and worker-memory figures; returns the (now awaiting replies) campaign id."""
    settings = env.settings
    with session_scope(settings) as session:
        category = make_category(session, "bench-dispatch", 1, messages)
        campaign_id = make_campaign(session, "bench dispatch", category_ids=[category])
    with session_scope(settings) as session:
        launch_campaign(session, settings, RecordingFollowups(), campaign_id)
    worker = env.procs["worker"]
    sampler = RssSampler(worker)
    rss_before = cpu.tree_rss(worker.pid)
    time.sleep(1.2)  # PostgreSQL publishes a backend's statistics at most once a second
    before = _db_stats(env)
    graph_before = int(env.graph_stats()["sent"])
    sampler.start()
    cpu_before = cpu.snapshot(env)
    progress: list[tuple[float, int]] = []
    try:
        start = time.perf_counter()
        for _ in range(env.opts.workers):
            env.send_task("relance.send_campaign_messages")
        _wait_sent(env, campaign_id, messages, progress)
        elapsed = time.perf_counter() - start
        cpu_used = cpu.utilisation(cpu_before, cpu.snapshot(env))
    finally:
        sampler.stop()
    time.sleep(1.2)  # PostgreSQL publishes a backend's statistics at most once a second
    after = _db_stats(env)
    graph_sent = int(env.graph_stats()["sent"]) - graph_before
    with session_scope(settings) as session:
        statuses = dict(
            session.execute(
                select(Message.status, func.count())
                .where(Message.campaign_id == campaign_id)
                .group_by(Message.status)
            ).all()
        )
    value = messages / elapsed
    limit = report.limits["noop_tasks_per_s"]
    per_message = {k: round((after[k] - before[k]) / messages, 2) for k in after}
    report.add(
        Figure(
            "dispatch_messages_per_s",
            value,
            "messages/s",
            limit,
            f"no-op Celery tasks/s ({env.opts.workers} pool processes, same broker)",
            ">= 1,000/s and >= 50 % of the no-op limit",
            value >= DISPATCH_TARGET and value >= 0.5 * limit,
        ),
        messages=messages,
        seconds=round(elapsed, 3),
        workers=env.opts.workers,
        handed_to_provider=graph_sent,
        statuses=statuses,
        database_rows_per_message=per_message,
        cpu_percent_of_one_core=cpu_used,
    )
    _rss_figure(report, sampler.samples, progress, messages, rss_before)
    return campaign_id


SENDERS = 4
SENDERS_RATIO_TARGET = 0.9


def dispatch_senders(env: BenchEnv, report: Report, messages: int) -> None:
    """The same dispatch over 4 numbers (the default and three more, even shares): each has
    its own limiter key, claims and loop; the figure's limit is the single-sender figure."""
    settings = env.settings
    with session_scope(settings) as session:
        ids = [service.ensure_default(session, settings).id]
        for k in range(1, SENDERS):
            data = SenderCreate.model_validate(
                {"name": f"bench-{k}", "provider": settings.provider, **_ref(settings, k)}
            )
            ids.append(service.create_sender(session, settings, data).id)
        category = make_category(session, "bench-senders", 1, messages)
        campaign_id = make_campaign(session, "bench 4 senders", category_ids=[category])
        session.execute(
            campaign_senders.insert(),
            [{"campaign_id": campaign_id, "sender_id": s, "weight": 1} for s in ids],
        )
    with session_scope(settings) as session:
        launch_campaign(session, settings, RecordingFollowups(), campaign_id)
    start = time.perf_counter()
    for _ in range(env.opts.workers):
        env.send_task("relance.send_campaign_messages")
    _wait_sent(env, campaign_id, messages, [])
    elapsed = time.perf_counter() - start
    with session_scope(settings) as session:
        shares = dict(
            session.execute(
                select(Message.sender_id, func.count())
                .where(Message.campaign_id == campaign_id)
                .group_by(Message.sender_id)
            ).all()
        )
    value = messages / elapsed
    single = next(f for f in report.figures if f.name == "dispatch_messages_per_s").value
    report.add(
        Figure(
            "dispatch_4_senders_messages_per_s",
            value,
            "messages/s",
            single,
            "single-sender dispatch messages/s (same run)",
            f">= {SENDERS_RATIO_TARGET:.0%} of the single-sender figure",
            value >= SENDERS_RATIO_TARGET * single,
        ),
        messages=messages,
        seconds=round(elapsed, 3),
        senders=SENDERS,
        messages_per_sender={str(k): v for k, v in shares.items()},
    )


def _ref(settings: Settings, k: int) -> dict[str, str]:
    """A made-up identifier of the provider's kind for bench sender ``k``."""
    column = REF_FIELDS.get(settings.provider)
    if column is None:
        return {}
    value = f"whatsapp:+1555000{k:04d}" if column == "twilio_from" else f"9000000{k:04d}"
    return {column: value}


def _wait_sent(
    env: BenchEnv, campaign_id: int, messages: int, progress: list[tuple[float, int]]
) -> None:
    last_change = time.perf_counter()
    sent = 0
    while sent < messages:
        time.sleep(0.02)
        with session_scope(env.settings) as session:
            now_sent = campaign_value(session, campaign_id, "message_1_sent")
        now = time.perf_counter()
        progress.append((now, now_sent))
        if now_sent != sent:
            sent, last_change = now_sent, now
        elif now - last_change > STALL_SECONDS:
            raise BenchError(
                f"dispatch stalled at {sent}/{messages} messages sent for {STALL_SECONDS:.0f} s"
            )
        env.check_alive()


def _slope_per_message(
    samples: list[tuple[float, int]], progress: list[tuple[float, int]], warm_at: float
) -> float | None:
    """Bytes of RSS per message sent, fitted over the samples taken from ``warm_at`` on.

    None when the run is too short for a fit to mean anything (a few samples of a quick run
    scaled to a million messages would be noise multiplied by a thousand).
    """
    times = [t for t, _ in progress]
    points = []
    for t, rss in samples:
        if t < warm_at:
            continue
        sent = progress[min(bisect.bisect_left(times, t), len(progress) - 1)][1]
        points.append((float(sent), float(rss)))
    if len(points) < MIN_FIT_SAMPLES or points[-1][0] - points[0][0] < MIN_FIT_MESSAGES:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def _rss_figure(
    report: Report,
    samples: list[tuple[float, int]],
    progress: list[tuple[float, int]],
    messages: int,
    rss_before: int,
) -> None:
    """Growth = peak - baseline, the baseline taken once 10 % of the messages went (warm-up)."""
    warm_at = next((t for t, sent in progress if sent >= messages * 0.1), progress[0][0])
    after_warm = [rss for t, rss in samples if t >= warm_at] or [rss for _, rss in samples]
    baseline, peak = after_warm[0], max(after_warm)
    growth = (peak - baseline) / MB
    # The slope is fitted on the second half only: caches (compiled SQL, connection pools)
    # still fill during the first, and a fit over them would read as a leak.
    half_at = next((t for t, sent in progress if sent >= messages * 0.5), warm_at)
    slope = _slope_per_message(samples, progress, half_at)
    details: dict[str, Any] = {
        "samples": len(samples),
        "rss_before_dispatch_mb": round(rss_before / MB, 1),
        "baseline_mb": round(baseline / MB, 1),
        "peak_mb": round(peak / MB, 1),
        "end_mb": round(after_warm[-1] / MB, 1),
        "over_messages": messages,
        # Least-squares RSS growth per message over the second half of the run, scaled: what
        # 1,000,000 messages would add at that rate (a leak too small to see over M).
        "slope_mb_per_100k_messages": None if slope is None else round(slope * 1e5 / MB, 2),
        "projected_growth_at_1m_messages_mb": None if slope is None else round(slope * 1e6 / MB),
    }
    report.add(
        Figure(
            "worker_rss_growth_mb",
            growth,
            "MB",
            baseline / MB,
            "worker tree RSS after warm-up (MB)",
            "< 50 MB",
            growth < 50,
        ),
        **details,
    )
