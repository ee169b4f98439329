"""WhatsApp templates end to end on SQLite and PostgreSQL, against the fake Graph API.

``GET /api/templates`` pages through Meta's list and caches it; a launch on ``meta`` needs a
template for Message 1; a template reaches Meta in its exact format, personalised per contact;
the preview fills a template's own texts; Message 2 past the 24 h window goes as
``message_2_template`` or fails, decided when it is sent (a clock that moves).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from relance.campaigns import answers
from relance.campaigns.dispatch import dispatch
from relance.campaigns.followups import RecordingFollowups
from relance.campaigns.launch import launch_campaign, start_due_scheduled
from relance.config import Settings, get_settings, load_settings
from relance.db import session_scope
from relance.deps import get_followups
from relance.fakes.graph import FakeGraph
from relance.models import Campaign, Contact, Recipient, utcnow
from relance.pacing.limiter import make_limiter
from relance.providers.meta import MetaProvider
from relance.providers.template_catalog import (
    FAILURE_SECONDS,
    TemplateCatalog,
    TemplatesUnavailable,
)
from tests.support.api import api_client, row_counts
from tests.support.engine import (
    FakeProvider,
    assert_counters_match_rows,
    make_campaign,
    phone,
    seed_contacts,
)
from tests.support.providers import recorded

fixture = partial(recorded, "meta")
TEMPLATES = (
    fixture("message_templates_components.json")["data"] + fixture("message_templates.json")["data"]
)
NAMES = [t["name"] for t in TEMPLATES]
PAGE = 2  # 5 templates: three pages
PROMO = {"name": "seasonal_promotion", "language": "en_US"}


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    with FakeGraph(templates=TEMPLATES, page_size=PAGE, keep_templates=True) as fake:
        yield fake


def _meta_env(graph: FakeGraph) -> dict[str, str]:
    return {
        "RELANCE_PROVIDER": "meta",
        "META_GRAPH_URL": graph.url,
        "META_PHONE_NUMBER_ID": "106540352242922",
        "META_ACCESS_TOKEN": "EAAG-test-token",
        "META_VERIFY_TOKEN": "verify",
        "META_WABA_ID": graph.waba_id,
    }


@pytest.fixture
def meta_settings(
    settings: Settings, graph: FakeGraph, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """The test's settings (and get_settings()) on the meta provider, Graph being the fake."""
    for key, value in _meta_env(graph).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield load_settings()
    get_settings.cache_clear()


@pytest.fixture
def meta_client(meta_settings: Settings, followups: RecordingFollowups) -> Iterator[TestClient]:
    with api_client(meta_settings) as c:
        c.app.dependency_overrides[get_followups] = lambda: followups  # type: ignore[attr-defined]
        yield c


def _category(settings: Settings, n: int = 3) -> int:
    with session_scope(settings) as session:
        category = seed_contacts(session, n)
        for contact in session.scalars(select(Contact)):
            contact.attributes = {"city": f"Lyon{contact.id}"}
        return category


# GET /api/templates ------------------------------------------------------------------------


def test_the_list_pages_through_the_account_and_is_cached(
    meta_client: TestClient, graph: FakeGraph
) -> None:
    r = meta_client.get("/api/templates")

    assert r.status_code == 200, r.text
    listing = r.json()
    assert (listing["provider"], listing["total"], listing["reason"]) == ("meta", 5, None)
    assert [t["name"] for t in listing["items"]] == NAMES
    assert listing["fetched_at"] is not None
    assert graph.template_requests == 3  # 2 + 2 + 1, following paging.cursors.after
    promo = listing["items"][0]
    assert (promo["status"], promo["category"], promo["language"]) == (
        "APPROVED",
        "MARKETING",
        "en_US",
    )
    assert [p["field"] for p in promo["parameters"]][:2] == ["header.text", "parameters.0"]

    assert meta_client.get("/api/templates").json() == listing
    assert graph.template_requests == 3  # cached in this process


def test_the_cache_lasts_its_time(meta_settings: Settings, graph: FakeGraph) -> None:
    now = [1000.0]
    catalog = TemplateCatalog(meta_settings, ttl=300, clock=lambda: now[0])

    assert len(catalog.listing().items) == 5
    now[0] += 299
    assert catalog.find("order_confirmation", "en_US") is not None
    assert catalog.find("order_confirmation", "fr") is None
    assert graph.template_requests == 3
    now[0] += 2
    catalog.listing()
    assert graph.template_requests == 6


def test_a_failure_is_remembered_briefly(meta_settings: Settings, graph: FakeGraph) -> None:
    """The preview asks at each keystroke: a Meta that refuses is not asked each time."""
    now = [0.0]
    unknown = meta_settings.model_copy(update={"meta_waba_id": "999"})
    catalog = TemplateCatalog(unknown, clock=lambda: now[0])

    for seconds in (0, FAILURE_SECONDS - 1):
        now[0] = seconds
        with pytest.raises(TemplatesUnavailable) as caught:
            catalog.listing()
        assert caught.value.status_code == 502
    assert graph.template_requests == 1
    now[0] = FAILURE_SECONDS + 1
    with pytest.raises(TemplatesUnavailable):
        catalog.listing()
    assert graph.template_requests == 2


@pytest.mark.parametrize(
    ("env", "status", "said"),
    [
        ({"META_WABA_ID": ""}, 503, "META_WABA_ID is not set"),
        ({"META_WABA_ID": "999"}, 502, "Object with ID '999' does not exist"),
        ({"META_ACCESS_TOKEN": "", "RELANCE_PROVIDER": "simulator"}, 200, None),
    ],
)
def test_without_a_list_the_answer_says_why(
    settings: Settings,
    graph: FakeGraph,
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    status: int,
    said: str | None,
) -> None:
    for key, value in {**_meta_env(graph), **env}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    with api_client(load_settings()) as client:
        r = client.get("/api/templates")
    get_settings.cache_clear()

    assert r.status_code == status, r.text
    if said:
        assert said in r.json()["detail"]
    else:
        assert r.json()["items"] == []
        assert r.json()["provider"] == "simulator"
        assert "plain text" in r.json()["reason"]
        assert graph.template_requests == 0


# Launching on meta ---------------------------------------------------------------------------


def test_a_plain_text_message_1_cannot_launch_on_meta(
    meta_client: TestClient, meta_settings: Settings
) -> None:
    category = _category(meta_settings)
    body = {"name": "x", "message_1": "Bonjour {first_name}", "category_ids": [category]}
    cid = meta_client.post("/api/campaigns", json=body).json()["id"]
    before = row_counts(meta_settings, "recipients", "messages")

    r = meta_client.post(f"/api/campaigns/{cid}/launch")

    assert r.status_code == 422, r.text
    [problem] = r.json()["detail"]
    assert problem["field"] == "message_1_template"
    assert "24 h" in problem["message"] and "approved template" in problem["message"]
    assert row_counts(meta_settings, "recipients", "messages") == before
    assert meta_client.get(f"/api/campaigns/{cid}").json()["status"] == "draft"

    r = meta_client.patch(f"/api/campaigns/{cid}", json={"message_2_template": PROMO})
    assert r.json()["message_2_template"] == {**PROMO, "parameters": []}
    r = meta_client.post(f"/api/campaigns/{cid}/launch")
    assert r.status_code == 422
    assert {p["field"] for p in r.json()["detail"]} == {"message_1_template", "message_2_template"}

    meta_client.patch(
        f"/api/campaigns/{cid}", json={"message_1_template": PROMO, "message_2": "Merci"}
    )
    assert meta_client.post(f"/api/campaigns/{cid}/launch").status_code == 200


def test_a_scheduled_campaign_without_a_template_is_cancelled_on_meta(
    meta_settings: Settings,
) -> None:
    with session_scope(meta_settings) as session:
        cid = make_campaign(session, [seed_contacts(session, 2)])
        campaign = session.get_one(Campaign, cid)
        campaign.status, campaign.scheduled_at = "scheduled", utcnow()
        campaign.message_1_template = None  # plain text, as on the simulator

    with session_scope(meta_settings) as session:
        assert start_due_scheduled(session, meta_settings, RecordingFollowups()) == []

    with session_scope(meta_settings) as session:
        campaign = session.get_one(Campaign, cid)
        assert campaign.status == "cancelled"
        assert "message_1_template" in (campaign.status_reason or "")


def test_templates_are_stored_whole_and_checked_field_by_field(
    meta_client: TestClient, meta_settings: Settings
) -> None:
    category = _category(meta_settings)
    template = {
        "name": "summer_catalogue",
        "language": "fr",
        "header": {"format": "image", "link": "https://example.com/summer.jpg"},
        "parameters": ["{first_name}"],
        "buttons": [{"index": 0, "sub_type": "url", "text": "{city}"}],
    }
    body = {"name": "x", "message_1": "Hi", "category_ids": [category]}
    created = meta_client.post("/api/campaigns", json={**body, "message_1_template": template})
    assert created.status_code == 201, created.text
    assert created.json()["message_1_template"] == template
    cid = created.json()["id"]
    # An edit keeps what the template's defaults say (the language) as a creation does.
    r = meta_client.patch(f"/api/campaigns/{cid}", json={"message_1_template": {"name": "t"}})
    assert r.json()["message_1_template"] == {"name": "t", "language": "fr", "parameters": []}

    cases: list[tuple[dict[str, Any], str]] = [
        ({"header": {"format": "text", "text": "{first"}}, "message_1_template.header.text"),
        (
            {"buttons": [{"index": 0, "sub_type": "quick_reply", "payload": "x\x00"}]},
            "message_1_template.buttons.0.payload",
        ),
        ({"named_parameters": {"x": "{"}}, "message_1_template.named_parameters.x"),
    ]
    for bad, field in cases:
        r = meta_client.patch(
            f"/api/campaigns/{cid}", json={"message_1_template": {"name": "t", **bad}}
        )
        assert r.status_code == 422, r.text
        assert field in [e["field"] for e in r.json()["detail"]]


# Sending -------------------------------------------------------------------------------------


def test_a_template_reaches_meta_in_its_format_personalised(
    meta_client: TestClient, meta_settings: Settings, graph: FakeGraph
) -> None:
    category = _category(meta_settings, 2)
    template = {
        "name": "seasonal_promotion",
        "language": "en_US",
        "header": {"format": "text", "text": "{first_name}"},
        "parameters": ["{city}", "{code}", "25%"],
        "buttons": [{"index": 1, "sub_type": "quick_reply", "payload": "STOP_{first_name}"}],
    }
    body = {
        "name": "x",
        "message_1": "Bonjour",
        "message_1_template": template,
        "placeholder_defaults": {"code": "PRINTEMPS"},
        "category_ids": [category],
    }
    cid = meta_client.post("/api/campaigns", json=body).json()["id"]
    assert meta_client.post(f"/api/campaigns/{cid}/launch").status_code == 200

    provider = MetaProvider(meta_settings)
    report = dispatch(
        meta_settings,
        provider,
        make_limiter(meta_settings),
        RecordingFollowups(),
        budget_seconds=30,
    )
    provider.close()

    assert report.sent == 2
    with session_scope(meta_settings) as session:
        contacts = {c.phone.lstrip("+"): c for c in session.scalars(select(Contact))}
    assert len(graph.accepted) == 2
    for accepted in graph.accepted:
        contact = contacts[accepted.to]
        assert accepted.template == {
            "name": "seasonal_promotion",
            "language": {"code": "en_US"},
            "components": [
                {"type": "header", "parameters": [{"type": "text", "text": contact.first_name}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": contact.attributes["city"]},
                        {"type": "text", "text": "PRINTEMPS"},
                        {"type": "text", "text": "25%"},
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "1",
                    "parameters": [{"type": "payload", "payload": f"STOP_{contact.first_name}"}],
                },
            ],
        }


def test_the_preview_fills_the_template_from_its_own_texts(
    meta_client: TestClient, meta_settings: Settings
) -> None:
    category = _category(meta_settings, 2)
    template = {
        **PROMO,
        "header": {"format": "text", "text": "{first_name}'s sale"},
        "parameters": ["Sunday", "{city}", "25%"],
        "buttons": [{"index": 0, "sub_type": "quick_reply", "payload": "NO_PROMO"}],
    }
    r = meta_client.post(
        "/api/preview",
        json={"message_1": "Hi", "message_1_template": template, "category_ids": [category]},
    )

    assert r.status_code == 200, r.text
    shown = r.json()["message_1_template"]
    assert (shown["found"], shown["status"], shown["note"]) == (True, "APPROVED", None)
    assert shown["header"] == {"format": "text", "text": "Our Ada0's sale is on!", "link": None}
    assert shown["body"] == (
        "Shop now through Sunday and use code Lyon1 to get 25% off of all merchandise."
    )
    assert shown["footer"] == "Use the buttons below to manage your marketing subscriptions"
    assert [(b["text"], b["payload"]) for b in shown["buttons"]] == [
        ("Unsubscribe from Promos", "NO_PROMO"),
        ("Unsubscribe from All", None),
    ]

    lacking = {**PROMO, "parameters": ["Sunday"]}
    r = meta_client.post("/api/preview", json={"message_1": "Hi", "message_1_template": lacking})
    note = r.json()["message_1_template"]["note"]
    assert "header.text" in note and "parameters.2" in note
    assert "{{3}}" in r.json()["message_1_template"]["body"]

    unknown = {"name": "nope", "language": "fr"}
    r = meta_client.post("/api/preview", json={"message_1": "Hi", "message_1_template": unknown})
    assert r.json()["message_1_template"]["found"] is False
    assert "no template 'nope'" in r.json()["message_1_template"]["note"]


def test_the_preview_on_another_provider_shows_the_values_and_why(
    client: TestClient, settings: Settings
) -> None:
    template = {"name": "t", "language": "fr", "named_parameters": {"who": "{first_name}"}}
    r = client.post(
        "/api/preview",
        json={
            "message_1": "Hi",
            "message_1_template": template,
            "category_ids": [_category(settings)],
        },
    )

    shown = r.json()["message_1_template"]
    assert shown["found"] is False
    assert shown["values"] == {"named_parameters.who": "Ada0"}
    assert "plain text" in shown["note"]


# Message 2 and the 24 h window ---------------------------------------------------------------


def test_message_2_past_the_window_goes_as_its_template_or_fails(meta_settings: Settings) -> None:
    """Decided when Message 2 is sent, by the clock of that moment: before the 24 h are up it
    goes as text; after, as message_2_template if the campaign has one, else it fails."""
    followups = RecordingFollowups()
    with session_scope(meta_settings) as session:
        cid = make_campaign(session, [seed_contacts(session, 3)], window=3 * 86400)
        session.get_one(Campaign, cid).message_1_template = PROMO
    with session_scope(meta_settings) as session:
        launch_campaign(session, meta_settings, followups, cid)
    provider = FakeProvider(name="meta")
    limiter = make_limiter(meta_settings)
    dispatch(meta_settings, provider, limiter, followups)
    assert [m.template for m in provider.sent] == [{**PROMO, "parameters": []}] * 3
    m2: list[int] = []
    for i in range(3):
        with session_scope(meta_settings) as session:
            answers.record_interaction(session, meta_settings, followups, phone(i))
        m2.append(followups.sent[-1])
    with session_scope(meta_settings) as session:
        replied = {r.contact_id: r.replied_at for r in session.scalars(select(Recipient)).all()}
    first = min(v for v in replied.values() if v is not None)

    def send(message_id: int, at: timedelta) -> None:
        dispatch(
            meta_settings,
            provider,
            limiter,
            followups,
            message_ids=[message_id],
            clock=lambda: first + at,
        )

    send(m2[0], timedelta(hours=23, minutes=59))
    assert (provider.sent[-1].kind, provider.sent[-1].text, provider.sent[-1].template) == (
        "message_2",
        "Merci Ada0 !",
        None,
    )

    sent_before = len(provider.sent)
    send(m2[1], timedelta(hours=24, minutes=1))
    assert len(provider.sent) == sent_before  # never handed to Meta
    with session_scope(meta_settings) as session:
        failed = session.scalars(select(Recipient).where(Recipient.state == "failed")).one()
        assert "24 h" in (failed.last_error or "")
        assert "message_2_template" in (failed.last_error or "")

    with session_scope(meta_settings) as session:
        session.get_one(Campaign, cid).message_2_template = {
            "name": "we_missed_you",
            "language": "fr",
            "parameters": ["{first_name}"],
        }
    send(m2[2], timedelta(days=2))
    assert provider.sent[-1].kind == "message_2"
    assert provider.sent[-1].template == {
        "name": "we_missed_you",
        "language": "fr",
        "parameters": ["Ada2"],
    }
    with session_scope(meta_settings) as session:
        states = sorted(r.state for r in session.scalars(select(Recipient)))
    assert states == ["failed", "message_2_sent", "message_2_sent"]
    assert_counters_match_rows(meta_settings, cid)
