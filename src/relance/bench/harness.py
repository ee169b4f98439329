"""``relance bench``: SPEC section 8's figures, each beside the machine limit measured in the run.

Phases, in order (each prints one line as it ends):

1. scratch database (created and migrated), contacts seeded by COPY;
2. database limits (COPY, batched UPDATE, SELECT by primary key) and Redis round trips;
3. fan-out: ``launch_campaign`` on N contacts; status check on that campaign;
4. the fake Graph server and a real Celery worker; no-op task rate and round trip (limits);
5. dispatch of M messages end to end, worker RSS sampled meanwhile; then M over 4 senders;
6. ``relance api``: signed single-status webhooks (after the bare-HMAC limit), signed status
   batches, reply -> Message 2 latency, completion lag.

Each figure's limit (``ratio = value / limit``):

=========================  ===================================================================
fanout_recipients_per_s    raw COPY rows/s into a scratch table shaped like ``recipients``
dispatch_messages_per_s    no-op Celery tasks/s, same broker and pool size
dispatch_4_senders_...     the single-sender dispatch figure of the same run (4 numbers)
webhook_events_per_s       raw batched UPDATE rows/s (100 rows per transaction)
webhook_single_*           a bare FastAPI route checking the HMAC (same uvicorn, same load);
                           raw single-row INSERTs/s into a scratch inbox (reported beside)
reply_to_m2_p99_s          no-op Celery round trip p99 (publish -> task runs)
completion_lag_p99_s       the same round trip (the plan's own path: 5 s + up to 120 s)
status_check_ms_at_1m      raw ``SELECT 1`` by primary key, p99
worker_rss_growth_mb       the worker tree's RSS after warm-up
recipients_page_p99_ms     raw ``SELECT 1`` by primary key, p99 (bench/results.py)
export_rows_per_s          the database writing the same rows as CSV by itself
=========================  ===================================================================

Everything it starts or creates (subprocesses, scratch table, database, temporary files) is
released at the end, after an error or a Ctrl-C too.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from rich.console import Console

from relance.bench import (
    dispatch,
    fanout,
    insert_limit,
    latency,
    limits,
    results,
    single_webhooks,
    webhooks,
)
from relance.bench.env import BenchEnv, Options
from relance.bench.errors import BenchError
from relance.bench.report import FIGURE_NAMES, Figure, Report, code_version, machine_info
from relance.bench.seed import clear_campaigns, seed_contacts
from relance.logs import configure_logging
from relance.processes import ProcessDied

QUICK = {"recipients": 100_000, "messages": 5_000, "replies": 100, "campaigns": 60}
FULL_MESSAGES = 50_000
UNITS = {
    "fanout_recipients_per_s": "recipients/s",
    "dispatch_messages_per_s": "messages/s",
    "dispatch_4_senders_messages_per_s": "messages/s",
    "webhook_events_per_s": "events/s",
    "webhook_single_requests_per_s": "requests/s",
    "webhook_single_p99_s": "s (p99)",
    "webhook_apply_lag_p99_s": "s (p99)",
    "reply_to_m2_p99_s": "s (p99)",
    "completion_lag_p99_s": "s (p99)",
    "status_check_ms_at_1m": "ms (p99)",
    "worker_rss_growth_mb": "MB",
    "recipients_page_p99_ms": "ms (p99)",
    "export_rows_per_s": "rows/s",
}


def parse(args: list[str]) -> tuple[Options, Path | None]:
    p = argparse.ArgumentParser(
        prog="relance bench",
        description="SPEC section 8's figures, each beside the machine limit measured in the "
        "same run. Without a size option it runs the quick sizes (< 3 minutes on 2 cores).",
    )
    p.add_argument("--quick", action="store_true", help="small sizes for CI (the default)")
    p.add_argument("--embedded", action="store_true", help="SQLite + filesystem broker")
    p.add_argument("--recipients", type=int, help="fan-out / status-check campaign size")
    p.add_argument("--messages", type=int, help="dispatch campaign size (webhooks use it too)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="pool processes")
    p.add_argument("--replies", type=int, help="reply -> Message 2 samples (>= 100)")
    p.add_argument("--campaigns", type=int, help="small campaigns for the completion lag")
    p.add_argument("--json", type=Path, help="write the JSON report there")
    p.add_argument("--database-url", help="PostgreSQL server for the scratch database")
    p.add_argument(
        "--redis-url", help="Redis broker (default: BROKER_URL, else a free local database)"
    )
    ns = p.parse_args(args)
    quick = ns.quick or (ns.recipients is None and ns.messages is None)
    recipients = ns.recipients or (QUICK["recipients"] if quick else 1_000_000)
    messages = ns.messages or (QUICK["messages"] if quick else min(recipients, FULL_MESSAGES))
    opts = Options(
        quick=quick,
        embedded=ns.embedded,
        recipients=recipients,
        messages=messages,
        workers=max(1, ns.workers),
        replies=ns.replies or (QUICK["replies"] if quick else 300),
        campaigns=ns.campaigns or (QUICK["campaigns"] if quick else 150),
        database_url=ns.database_url,
        redis_url=ns.redis_url,
    )
    if min(opts.recipients, opts.messages, opts.replies, opts.campaigns) < 1:
        p.error("sizes must be positive")
    if opts.replies > opts.messages:
        p.error("--replies cannot exceed --messages")
    return opts, ns.json


class Run:
    """The phases, sharing one environment and one report."""

    def __init__(self, env: BenchEnv, report: Report, console: Console) -> None:
        self.env = env
        self.report = report
        self.console = console
        self.started = time.perf_counter()

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.perf_counter() - self.started:6.1f} s[/dim]  {text}")

    def figure(self, name: str) -> Figure:
        return next(f for f in self.report.figures if f.name == name)

    def all(self) -> None:
        env, report, opts = self.env, self.report, self.env.opts
        env.migrate()
        report.machine = machine_info(*env.versions())
        report.machine["postgres_settings"] = env.server_settings()
        contacts = max(opts.recipients, opts.messages + 2 * opts.campaigns)
        seed_contacts(env.engine(), contacts)
        where = env.database_url.rsplit("/", 1)[-1]
        self.say(f"scratch database {where} ready, {contacts:,} contacts seeded")

        rows = opts.recipients
        report.limits.update(limits.database_limits(env.engine(), rows, min(rows, 100_000), 2000))
        if env.redis_url:
            report.limits["redis_round_trips_per_s"] = limits.redis_ops_per_s(env)
        if not opts.embedded:
            report.limits["single_row_inserts_per_s"] = insert_limit.single_row_inserts_per_s(
                env.engine(), single_webhooks.CONCURRENCY, 2.0 if opts.quick else 5.0
            )
        self.say(
            f"limits: bulk insert {report.limits['copy_rows_per_s']:,.0f} rows/s, batched UPDATE "
            f"{report.limits['update_rows_per_s']:,.0f} rows/s, SELECT by PK p99 "
            f"{report.limits['select_pk_p99_ms']:.3f} ms"
        )

        campaign_id = fanout.fanout(env, report, opts.recipients)
        self.say(f"fan-out: {self.figure('fanout_recipients_per_s').value:,.0f} recipients/s")
        fanout.status_check(env, report, campaign_id, 2000)
        self.say(f"status check at {opts.recipients:,}: p99 {self._value('status_check')} ms")
        results.recipients_pages(env, report, campaign_id, opts.recipients)
        self.say(f"recipients page at {opts.recipients:,}: p99 {self._value('recipients')} ms")
        results.export(env, report, campaign_id, opts.recipients)
        self.say(f"export: {self._value('export')} rows/s")
        # The big campaign would only slow the next phases down: they measure other paths.
        clear_campaigns(env.engine())

        env.start_graph()
        env.start_worker()
        ready = limits.wait_worker_ready(env)
        self.say(f"fake Graph server and Celery worker ({opts.workers} processes) up")
        noop_count = 5000 if opts.quick else 20_000
        report.limits.update(limits.celery_noop_rate(env, noop_count))
        report.limits.update(limits.celery_noop_latency(env, 200, 0.01))
        report.limits["worker_start_s"] = ready
        self.say(
            f"limits: no-op Celery {report.limits['noop_tasks_per_s']:,.0f} tasks/s, round trip "
            f"p99 {report.limits['noop_round_trip_p99_s'] * 1000:.1f} ms"
        )

        campaign_id = dispatch.dispatch(env, report, opts.messages)
        self.say(f"dispatch: {self._value('dispatch_messages')} messages/s")
        dispatch.dispatch_senders(env, report, opts.messages)
        self.say(f"dispatch over 4 senders: {self._value('dispatch_4')} messages/s")
        sent = webhooks.sent_messages(env, campaign_id)
        single, batched = sent[: len(sent) // 2], sent[len(sent) // 2 :]
        bare = single_webhooks.bare_hmac_limit(env, single)
        self.say(f"limit: bare HMAC route {bare.ok / bare.seconds:,.0f} requests/s")
        api_url = env.start_api()
        single_webhooks.single_ingest(env, report, api_url, single, bare)
        self.say(
            f"single webhooks: {self._value('webhook_single_requests')} requests/s, p99 "
            f"{self._value('webhook_single_p99')} s, applied lag p99 "
            f"{self._value('webhook_apply_lag')} s"
        )
        webhooks.webhook_ingest(env, report, api_url, batched)
        self.say(f"webhooks: {self._value('webhook_events')} events/s")
        latency.reply_to_m2(env, report, api_url, campaign_id, opts.replies)
        self.say(f"reply -> Message 2: p99 {self._value('reply')} s")
        latency.completion_lag(env, report, api_url, opts.messages + 1, opts.campaigns)
        self.say(f"completion lag: p99 {self._value('completion')} s")

    def _value(self, prefix: str) -> str:
        figure = next(f for f in self.report.figures if f.name.startswith(prefix))
        return f"{figure.value:,.4g}" if figure.value < 1000 else f"{figure.value:,.0f}"


def _fill_missing(report: Report) -> None:
    """A figure that could not be measured is still reported, as not met."""
    present = {f.name for f in report.figures}
    for name in FIGURE_NAMES:
        if name not in present:
            report.figures.append(
                Figure(name, math.nan, UNITS[name], math.nan, "not measured", "", False)
            )
    report.figures.sort(key=lambda f: FIGURE_NAMES.index(f.name))


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # Once: a second Ctrl-C must not cut the clean-up short (it would leave processes behind).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main(args: list[str]) -> int:
    opts, json_path = parse(args)
    # Piped output (CI, a file) gets a table wide enough to read, not 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    config = {k: v for k, v in vars(opts).items() if "url" not in k}
    report = Report(machine={}, config={**config, "code": code_version()})
    started = time.perf_counter()
    code = 0
    env: BenchEnv | None = None
    try:
        with ExitStack() as stack:
            try:
                env = BenchEnv(opts, stack)
                configure_logging(env.settings.log_level, env.settings.log_json)
                Run(env, report, console).all()
            except (BenchError, ProcessDied) as exc:
                report.errors.append(str(exc))
                console.print(f"[red]bench failed:[/red] {exc}")
                if env is not None:
                    console.print(env.logs_tail(), markup=False, highlight=False)
                code = 1
            except Exception as exc:
                report.errors.append(f"{type(exc).__name__}: {exc}")
                console.print(traceback.format_exc(), markup=False, highlight=False)
                if env is not None:
                    console.print(env.logs_tail(), markup=False, highlight=False)
                code = 1
            console.print("[dim]cleaning up: processes, scratch database, temporary files[/dim]")
    except KeyboardInterrupt:
        report.errors.append("interrupted")
        console.print("[yellow]interrupted: everything the bench started was stopped[/yellow]")
        code = 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    report.elapsed_seconds = time.perf_counter() - started
    _fill_missing(report)
    report.print_table(console)
    console.print(f"bench ran in {report.elapsed_seconds:.1f} s")
    if json_path is not None:
        report.write_json(json_path)
        console.print(f"JSON report written to {json_path}")
    return code
