"""Counters and histograms of what happened, added up across every process in the database.

The API and the workers are different processes, often on different hosts (Compose scales the
workers): a Prometheus registry in memory would show each only its own counts, and Prometheus'
multiprocess mode shares a directory, which containers do not. So each process adds up its
increments in memory (``inc``, ``observe``: no I/O on the hot path) and adds them to one row per
series in ``metric_samples`` at most every ``FLUSH_SECONDS`` (``flush_if_due``), one short
transaction; ``/metrics`` reads the sums. A process killed between two flushes loses at most
that much of its counts; a flush the database refuses is kept for the next one.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from relance.config import Settings
from relance.db import conflict_insert, session_scope
from relance.models import MetricSample

log = logging.getLogger(__name__)
FLUSH_SECONDS = 2.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class Metric:
    """A family: a counter, or a histogram when it has buckets (seconds)."""

    name: str
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


SENDS = Metric(
    "relance_sends",
    "Provider calls by provider, sender, message kind and outcome "
    "(sent, retry, rate_limited, failed, refused)",
    ("provider", "sender", "kind", "outcome"),
)
PROVIDER_LATENCY = Metric(
    "relance_provider_latency_seconds",
    "Time a provider took to answer a send",
    ("provider",),
    LATENCY_BUCKETS,
)
WEBHOOK_EVENTS = Metric(
    "relance_webhook_events",
    "Webhook events received, by provider, kind (status, interaction, template, notice) "
    "and what they did (an inbound_events outcome, or duplicate)",
    ("provider", "kind", "outcome"),
)
WEBHOOK_LAG = Metric(
    "relance_webhook_lag_seconds",
    "From the event's own timestamp to its recording",
    ("provider", "kind"),
    LAG_BUCKETS,
)
LIMITER_WAITS = Metric(
    "relance_limiter_waits",
    "Times the shared limiter made a dispatcher stop and wait, by sender and reason",
    ("sender", "reason"),
)
LIMITER_SLEEP = Metric(
    "relance_limiter_sleep_seconds",
    "Seconds dispatchers slept for a granted slot (the pace between sends), by sender",
    ("sender",),
)
TASK_DURATION = Metric(
    "relance_task_duration_seconds",
    "Celery task run time, by task and state (success, failure)",
    ("task", "state"),
    TASK_BUCKETS,
)
HTTP_REQUESTS = Metric(
    "relance_http_requests",
    "HTTP requests by method, route template and status",
    ("method", "route", "status"),
)
HTTP_DURATION = Metric(
    "relance_http_request_duration_seconds",
    "HTTP request time by method and route template",
    ("method", "route"),
    LATENCY_BUCKETS,
)
FAMILIES = (
    SENDS,
    PROVIDER_LATENCY,
    WEBHOOK_EVENTS,
    WEBHOOK_LAG,
    LIMITER_WAITS,
    LIMITER_SLEEP,
    TASK_DURATION,
    HTTP_REQUESTS,
    HTTP_DURATION,
)

Key = tuple[str, str]  # (sample name, labels as sorted JSON)


def labels_key(labels: Mapping[str, str]) -> str:
    """The stored form of a label set: the same labels always give the same string."""
    return _labels_json(tuple(sorted(labels.items())))


@functools.lru_cache(maxsize=4096)  # label sets are few; a send records three of them
def _labels_json(items: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(items, separators=(",", ":"), ensure_ascii=False)


def _checked(metric: Metric, labels: Mapping[str, object]) -> dict[str, str]:
    if set(labels) != set(metric.labels):
        raise ValueError(f"{metric.name} takes the labels {metric.labels}, not {sorted(labels)}")
    return {name: str(value)[:60] for name, value in labels.items()}


def bucket_of(buckets: tuple[float, ...], value: float) -> str:
    """The smallest bound holding ``value`` (stored per bucket; /metrics makes them cumulative)."""
    for bound in buckets:
        if value <= bound:
            return repr(float(bound))
    return "+Inf"


class Recorder:
    """This process's increments since its last flush."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[Key, float] = {}
        self._last_flush = time.monotonic()

    def _add(self, name: str, labels: Mapping[str, str], amount: float) -> None:
        key = (name, labels_key(labels))
        with self._lock:
            self._pending[key] = self._pending.get(key, 0.0) + amount

    def inc(self, metric: Metric, amount: float = 1.0, **labels: object) -> None:
        assert not metric.buckets, f"{metric.name} is a histogram: observe it"
        self._add(metric.name + "_total", _checked(metric, labels), amount)

    def observe(self, metric: Metric, value: float, **labels: object) -> None:
        assert metric.buckets, f"{metric.name} is a counter: inc it"
        checked = _checked(metric, labels)
        le = bucket_of(metric.buckets, value)
        self._add(metric.name + "_bucket", {**checked, "le": le}, 1.0)
        self._add(metric.name + "_sum", checked, value)
        self._add(metric.name + "_count", checked, 1.0)

    def observe_many(self, metric: Metric, values: Sequence[float], **labels: object) -> None:
        """``observe`` of each value, added up first (a webhook batch: thousands at once)."""
        assert metric.buckets, f"{metric.name} is a counter: inc it"
        if not values:
            return
        checked = _checked(metric, labels)
        for le, n in Counter(bucket_of(metric.buckets, v) for v in values).items():
            self._add(metric.name + "_bucket", {**checked, "le": le}, float(n))
        self._add(metric.name + "_sum", checked, float(sum(values)))
        self._add(metric.name + "_count", checked, float(len(values)))

    def pending(self) -> dict[Key, float]:
        with self._lock:
            return dict(self._pending)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def flush(self, settings: Settings) -> None:
        """Add what is pending to the database's sums; on failure keep it for the next flush."""
        with self._lock:
            taken, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        if not taken:
            return
        try:
            _add_to_database(settings, taken)
        except Exception as exc:
            log.warning("metrics not saved yet; kept for the next flush", extra={"error": str(exc)})
            with self._lock:
                for key, amount in taken.items():
                    self._pending[key] = self._pending.get(key, 0.0) + amount

    def due(self) -> bool:
        """Is something pending, and the last flush ``FLUSH_SECONDS`` old?"""
        with self._lock:
            return bool(self._pending) and time.monotonic() - self._last_flush >= FLUSH_SECONDS

    def flush_if_due(self, settings: Settings) -> None:
        if self.due():
            self.flush(settings)


def _add_to_database(settings: Settings, taken: Mapping[Key, float]) -> None:
    rows = [{"name": n, "labels": lk, "value": v} for (n, lk), v in sorted(taken.items())]
    with session_scope(settings) as session:
        stmt = conflict_insert(session, MetricSample)
        # Sorted rows: two processes flushing at once lock the rows in the same order.
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["name", "labels"],
                set_={"value": MetricSample.value + stmt.excluded.value},
            ),
            rows,
        )


recorder = Recorder()
