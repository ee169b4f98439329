"""Each Cloud API number's messaging limit, quality and throughput, read from the (fake) Graph
API, on SQLite and PostgreSQL; and the limit counted per business portfolio."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest

from relance.campaigns.stats_senders import sender_waits
from relance.config import Settings
from relance.db import session_scope
from relance.fakes.graph import FakeGraph
from relance.models import Sender
from relance.senders import service
from relance.senders.refresh import refresh_senders
from relance.senders.schemas import SenderCreate
from relance.senders.usage import limit_used
from relance.worker import beat_schedule
from tests.integration.test_senders_dispatch import Fleet, _dispatch, _setup
from tests.integration.test_webhooks_api import PROVIDER_ENV, use_provider

DEFAULT_ID = PROVIDER_ENV["meta"]["META_PHONE_NUMBER_ID"]
SECOND_ID = "109876543210987"


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph() as fake:
        yield fake


@pytest.fixture
def meta(settings: Settings, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("META_GRAPH_URL", graph.url)
    return use_provider(monkeypatch, "meta")


def _two_numbers(settings: Settings, portfolio: str | None = None) -> tuple[int, int]:
    with session_scope(settings) as session:
        default = service.ensure_default(session, settings)
        data = SenderCreate.model_validate(
            {
                "name": "second",
                "provider": "meta",
                "phone_number_id": SECOND_ID,
                "messaging_limit": 250,
                "portfolio": portfolio,
            }
        )
        return default.id, service.create_sender(session, settings, data).id


def _row(settings: Settings, sender_id: int) -> Sender:
    with session_scope(settings) as session:
        row = session.get_one(Sender, sender_id)
        session.expunge(row)
        return row


def test_a_reading_sets_the_portfolio_s_limit_and_the_number_s_quality_and_throughput(
    meta: Settings, graph: FakeGraph
) -> None:
    default_id, second_id = _two_numbers(meta)
    graph.numbers = {
        DEFAULT_ID: {
            "whatsapp_business_manager_messaging_limit": "TIER_2K",
            "quality_rating": "GREEN",
            "throughput": {"level": "HIGH"},
        },
        SECOND_ID: {"quality_rating": "RED", "throughput": {"level": "STANDARD"}},
    }
    said = refresh_senders(meta)
    assert graph.number_requests == 2
    assert len(said) == 2
    default, second = _row(meta, default_id), _row(meta, second_id)
    # Meta's limit is the business portfolio's: both numbers (one portfolio) hold 2,000.
    assert (default.messaging_limit, second.messaging_limit) == (2000, 2000)
    assert (default.quality_rating, default.status, default.throughput_per_second) == (
        "GREEN",
        "active",
        1000.0,
    )
    assert (second.quality_rating, second.status) == ("RED", "slowed")
    assert second.paused_reason and "quality red" in second.paused_reason
    assert default.meta_checked_at is not None and second.meta_checked_at is not None
    # The same answer again changes nothing.
    refresh_senders(meta)
    again = _row(meta, second_id)
    assert (again.status, again.messaging_limit, again.paused_reason) == (
        "slowed",
        2000,
        second.paused_reason,
    )


def test_another_portfolio_keeps_its_own_limit(meta: Settings, graph: FakeGraph) -> None:
    default_id, second_id = _two_numbers(meta, portfolio="other-business")
    graph.numbers = {DEFAULT_ID: {"whatsapp_business_manager_messaging_limit": "TIER_10K"}}
    graph.numbers[SECOND_ID] = {"whatsapp_business_manager_messaging_limit": "TIER_250"}
    refresh_senders(meta)
    assert _row(meta, default_id).messaging_limit == 10_000
    assert _row(meta, second_id).messaging_limit == 250


def test_a_graph_api_that_does_not_answer_the_fields_leaves_the_configured_values(
    meta: Settings, graph: FakeGraph
) -> None:
    default_id, second_id = _two_numbers(meta)
    graph.numbers = {DEFAULT_ID: {"verified_name": "Acme"}}  # none of the fields asked
    said = refresh_senders(meta)  # SECOND_ID: Meta's code 100 error (unknown to the fake)
    assert any("answered none of the fields" in line for line in said)
    assert any("HTTP 400" in line and "does not exist" in line for line in said)
    second = _row(meta, second_id)
    assert (second.messaging_limit, second.quality_rating, second.status) == (
        250,
        "UNKNOWN",
        "active",
    )
    assert second.meta_checked_at is None and _row(meta, default_id).meta_checked_at is None


def test_an_unreachable_graph_api_leaves_the_configured_values(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("META_GRAPH_URL", "http://127.0.0.1:9")  # nothing listens there
    meta = use_provider(monkeypatch, "meta")
    _, second_id = _two_numbers(meta)
    said = refresh_senders(meta)
    assert all("could not reach the Graph API" in line for line in said)
    assert _row(meta, second_id).messaging_limit == 250


def test_beat_reads_meta_only_for_the_cloud_api(settings: Settings) -> None:
    assert "refresh-meta-senders" not in beat_schedule(settings)  # the simulator
    meta = settings.model_copy(update={"provider": "meta"})
    assert beat_schedule(meta)["refresh-meta-senders"]["schedule"] == 3600.0
    never = meta.model_copy(update={"meta_refresh_seconds": 0.0})
    assert "refresh-meta-senders" not in beat_schedule(never)


def test_the_numbers_of_one_portfolio_share_one_count(settings: Settings) -> None:
    """Meta counts unique users per business portfolio: two numbers of portfolio "p" with a
    limit of 4 message 4 people together, a number of portfolio "q" 4 more, the unlimited
    default sender everyone it serves."""
    campaign_id, ids = _setup(settings, [1, 1, 1, 1], messaging_limit=4, portfolio="p")
    with session_scope(settings) as session:
        session.get_one(Sender, ids[3]).portfolio = "q"
    fleet = Fleet()
    _dispatch(settings, fleet)
    by_sender = Counter(fleet.sent_by().values())
    assert by_sender[0] == 8  # 30 recipients over 4 senders: 8, 8, 7, 7
    assert by_sender[ids[1]] + by_sender[ids[2]] == 4
    assert by_sender[ids[3]] == 4
    with session_scope(settings) as session:
        used = limit_used(session)
        waits = sender_waits(session, settings, campaign_id)
    assert (used[ids[1]], used[ids[2]], used[ids[3]]) == (4, 4, 4)
    assert sum("messaging limit 4 per 24 h reached" in w for w in waits) == 3


def test_relance_sender_refresh_says_what_meta_changed(meta: Settings, graph: FakeGraph) -> None:
    from typer.testing import CliRunner

    from relance.cli import cli

    _two_numbers(meta)
    graph.numbers = {DEFAULT_ID: {"whatsapp_business_manager_messaging_limit": "TIER_100K"}}
    result = CliRunner().invoke(cli, ["sender", "refresh"])
    assert result.exit_code == 0, result.stderr
    assert "messaging_limit 100000" in result.stdout
    assert "HTTP 400" in result.stdout  # the second number, unknown to Meta
