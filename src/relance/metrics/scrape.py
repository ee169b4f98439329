"""What ``/metrics`` answers: the counters every process added up (``recorder``), and gauges
read from the database at scrape time (due messages, recipients of sending campaigns by state,
campaigns by status, heartbeat ages), so they are true whichever process is scraped.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from relance.campaigns.domain import CampaignStatus, MessageStatus, RecipientState
from relance.config import Settings
from relance.db import session_scope
from relance.metrics import recorder as rec
from relance.models import Campaign, Heartbeat, Message, MetricSample, Recipient, utcnow

SENDING = CampaignStatus.SENDING.value


def _stored(session: Session) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every stored series by sample name, with its labels."""
    out: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for name, labels, value in session.execute(
        select(MetricSample.name, MetricSample.labels, MetricSample.value)
    ):
        out[name].append((dict(json.loads(labels)), value))
    return out


def _counter(metric: rec.Metric, stored: dict[str, list[tuple[dict[str, str], float]]]) -> Metric:
    family = CounterMetricFamily(metric.name, metric.help, labels=metric.labels)
    for labels, value in sorted(stored.get(metric.name + "_total", []), key=str):
        family.add_metric([labels[n] for n in metric.labels], value)
    return family


def _histogram(metric: rec.Metric, stored: dict[str, list[tuple[dict[str, str], float]]]) -> Metric:
    family = HistogramMetricFamily(metric.name, metric.help, labels=metric.labels)
    per_bucket: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
    for labels, value in stored.get(metric.name + "_bucket", []):
        key = tuple(labels[n] for n in metric.labels)
        per_bucket[key][labels["le"]] = value
    sums = {
        tuple(labels[n] for n in metric.labels): value
        for labels, value in stored.get(metric.name + "_sum", [])
    }
    bounds = [repr(float(b)) for b in metric.buckets] + ["+Inf"]
    for key in sorted(per_bucket):
        running, buckets = 0.0, []
        for bound in bounds:  # stored per bucket: Prometheus wants them cumulative
            running += per_bucket[key].get(bound, 0.0)
            buckets.append((bound, running))
        family.add_metric(list(key), buckets, sums.get(key, 0.0))
    return family


def due_messages(session: Session, now: datetime) -> dict[str, int]:
    """Messages a dispatcher may claim now, by kind: pending ones whose time has come, and the
    queued recipients' Message 1s not created yet (the dispatcher's predicates)."""
    due = dict(
        session.execute(
            select(Message.kind, func.count())
            .join(Campaign, Campaign.id == Message.campaign_id)
            .where(
                Message.status == MessageStatus.PENDING.value,
                Campaign.status == SENDING,
                or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= now),
            )
            .group_by(Message.kind)
        ).all()
    )
    waiting = session.scalar(
        select(func.count())
        .select_from(Recipient)
        .join(Campaign, Campaign.id == Recipient.campaign_id)
        .where(
            Campaign.status == SENDING,
            Recipient.state == RecipientState.QUEUED.value,
            Recipient.message_1_created_at.is_(None),
        )
    )
    out = {"message_1": int(due.get("message_1", 0)) + int(waiting or 0)}
    out["message_2"] = int(due.get("message_2", 0))
    return out


def _gauges(session: Session) -> Iterator[Metric]:
    now = utcnow()
    due = GaugeMetricFamily(
        "relance_due_messages", "Messages due to send now, by kind", labels=("kind",)
    )
    for kind, n in sorted(due_messages(session, now).items()):
        due.add_metric([kind], n)
    yield due
    recipients = GaugeMetricFamily(
        "relance_recipients",
        "Recipients of each sending campaign, by state (the campaign's counters)",
        labels=("campaign_id", "state"),
    )
    for campaign in session.scalars(select(Campaign).where(Campaign.status == SENDING)):
        for state in RecipientState:
            value = getattr(campaign, f"n_{state.value}")
            recipients.add_metric([str(campaign.id), state.value], value)
    yield recipients
    campaigns = GaugeMetricFamily("relance_campaigns", "Campaigns by status", labels=("status",))
    counts = dict(
        session.execute(select(Campaign.status, func.count()).group_by(Campaign.status)).all()
    )
    for status in CampaignStatus:
        campaigns.add_metric([status.value], counts.get(status.value, 0))
    yield campaigns
    ages = GaugeMetricFamily(
        "relance_heartbeat_age_seconds",
        "Seconds since each worker and Beat last said it was alive",
        labels=("role", "name"),
    )
    for row in session.scalars(select(Heartbeat).order_by(Heartbeat.role, Heartbeat.name)):
        ages.add_metric([row.role, row.name], (now - row.seen_at).total_seconds())
    yield ages


class DatabaseCollector(Collector):
    """Reads the sums and the gauges at each scrape, after adding this process's own counts."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        rec.recorder.flush(self.settings)
        with session_scope(self.settings) as session:
            stored = _stored(session)
            families = [
                _histogram(m, stored) if m.buckets else _counter(m, stored) for m in rec.FAMILIES
            ]
            families.extend(_gauges(session))
        yield from families


def registry_for(settings: Settings) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(settings))
    return registry


def render(settings: Settings) -> bytes:
    """The Prometheus text exposition of everything above."""
    return generate_latest(registry_for(settings))
