"""``/metrics``: who may scrape it, and numbers that match the database (SQLite and PostgreSQL).

A campaign's Message 1s go through a fake Cloud API that accepts some, rate-limits one and
refuses one for good; the provider then posts signed statuses (one of them twice) and a reply.
The scrape must say what the rows say.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, or_, select

from relance.config import Settings, get_settings
from relance.db import session_scope
from relance.metrics.http import serve_privately
from relance.metrics.recorder import recorder
from relance.models import Campaign, InboundEvent, Message, Recipient, utcnow
from relance.processes import free_port
from relance.providers.base import OutboundMessage, PermanentError, ProviderError, RateLimited
from tests.integration.test_webhooks_api import (
    launch,
    message_body,
    ok,
    post_meta,
    sent_messages,
    status_body,
    use_provider,
)
from tests.support.api import api_client
from tests.support.engine import FakeProvider, phone, run_dispatch

TOKEN = "metrics-token-for-tests"
ROOT = Path(__file__).parents[2]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    recorder.clear()  # another test's counts, recorded in this process, are not this database's
    yield use_provider(monkeypatch, "meta")
    recorder.clear()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with api_client(settings) as c:
        yield c


def scrape(client: TestClient) -> Samples:
    r = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def parse(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of a sample over the series whose labels include ``labels``."""
    return sum(
        value
        for (n, series), value in samples.items()
        if n == name and set(labels.items()) <= set(series)
    )


def picky(message: OutboundMessage) -> ProviderError | None:
    """Phone 0 is rate-limited, phone 1 refused for good, the others accepted."""
    if message.to == phone(0):
        return RateLimited("130429", "Rate limit hit", retry_after=3600)
    if message.to == phone(1):
        return PermanentError("131026", "Message undeliverable")
    return None


def test_metrics_are_not_served_without_a_token(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METRICS_TOKEN")
    get_settings.cache_clear()
    with api_client(get_settings()) as c:
        assert c.get("/metrics").status_code == 404
        # not even to an admin's API key: metrics have their own token
        assert c.get("/metrics", headers=dict(c.headers)).status_code == 404


def test_metrics_need_the_token(client: TestClient) -> None:
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"})
    assert wrong.status_code == 401 and "METRICS_TOKEN" in wrong.json()["detail"]
    # an API key is not the metrics token
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_metrics_on_a_private_port_without_a_token(settings: Settings) -> None:
    port = free_port()
    server = serve_privately(settings.model_copy(update={"metrics_port": port}))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        assert "relance_due_messages" in text and "relance_sends_total" in text
    finally:
        server[0].shutdown()


def test_the_scrape_matches_the_database(settings: Settings, client: TestClient) -> None:
    campaign_id, _ = launch(settings, 8)
    run_dispatch(settings, FakeProvider(name="meta", fail=picky))
    accepted = [s for s in sent_messages(settings, campaign_id) if s.provider_message_id]
    assert len(accepted) == 6
    for sent in accepted[:3]:
        ok(post_meta(client, status_body(sent, "delivered")))
    ok(post_meta(client, status_body(accepted[0], "delivered")))  # the provider retried it
    ok(
        post_meta(
            client,
            message_body(
                "webhook_text_reply.json", accepted[3].phone, accepted[3].provider_message_id, "oui"
            ),
        )
    )

    samples = scrape(client)

    with session_scope(settings) as session:
        sent_rows = session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.provider_message_id.is_not(None))
        )
        failed_rows = session.scalar(
            select(func.count()).select_from(Message).where(Message.status == "failed")
        )
        events = Counter(
            dict(
                session.execute(
                    select(InboundEvent.outcome, func.count()).group_by(InboundEvent.outcome)
                ).all()
            )
        )
        states = dict(
            session.execute(
                select(Recipient.state, func.count())
                .where(Recipient.campaign_id == campaign_id)
                .group_by(Recipient.state)
            ).all()
        )
        due_by_kind = dict(
            session.execute(
                select(Message.kind, func.count())
                .where(
                    Message.status == "pending",
                    or_(Message.next_attempt_at.is_(None), Message.next_attempt_at <= utcnow()),
                )
                .group_by(Message.kind)
            ).all()
        )
        waiting_m1 = session.scalar(
            select(func.count())
            .select_from(Recipient)
            .where(Recipient.state == "queued", Recipient.message_1_created_at.is_(None))
        )
        status = session.scalar(select(Campaign.status).where(Campaign.id == campaign_id))

    assert sent_rows == 6 and failed_rows == 1
    assert total(samples, "relance_sends_total", outcome="sent", kind="message_1") == sent_rows
    assert total(samples, "relance_sends_total", outcome="failed") == failed_rows
    assert total(samples, "relance_sends_total", outcome="rate_limited", provider="meta") == 1
    assert total(samples, "relance_provider_latency_seconds_count", provider="meta") == 8

    for outcome, n in events.items():
        assert total(samples, "relance_webhook_events_total", outcome=str(outcome)) == n, outcome
    assert total(samples, "relance_webhook_events_total", outcome="duplicate") == 1
    assert total(samples, "relance_webhook_events_total", kind="message") == 1
    assert total(samples, "relance_webhook_lag_seconds_count") == sum(events.values())

    assert status == "sending"
    for state, n in states.items():
        labels = {"campaign_id": str(campaign_id), "state": state}
        assert total(samples, "relance_recipients", **labels) == n, state
    # The reply queued a Message 2; the rate-limited Message 1 waits for its Retry-After.
    assert due_by_kind.get("message_2", 0) == 1
    assert total(samples, "relance_due_messages", kind="message_2") == 1
    expected_m1 = due_by_kind.get("message_1", 0) + (waiting_m1 or 0)
    assert total(samples, "relance_due_messages", kind="message_1") == expected_m1
    assert total(samples, "relance_campaigns", status="sending") == 1

    webhook_posts = total(
        samples,
        "relance_http_requests_total",
        method="POST",
        route="/webhooks/{provider}",
        status="200",
    )
    assert webhook_posts == 5


def test_counts_from_several_processes_add_up(settings: Settings, client: TestClient) -> None:
    """Each process adds its own increments to the same rows: two flushes sum."""
    from relance.metrics.recorder import SENDS

    for _ in range(2):  # two processes, one after the other, flushing what each counted
        recorder.inc(SENDS, 3, provider="meta", sender="s1", kind="message_1", outcome="sent")
        recorder.flush(settings)
    samples = scrape(client)
    assert total(samples, "relance_sends_total", sender="s1") == 6
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert json.dumps("s1") in text  # the label is printed as it was given


def test_the_grafana_dashboard_reads_metrics_that_exist(client: TestClient) -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for expr in exprs for m in re.findall(r"\brelance_[a-z_]+", expr)}
    served = {
        family.name
        for family in text_string_to_metric_families(
            client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
        )
    }
    # A histogram's samples are its family's name plus _bucket; a counter's plus _total.
    families = {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in used}
    assert len(dashboard["panels"]) >= 10 and families <= served, families - served
