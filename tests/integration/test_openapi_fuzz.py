"""schemathesis against the app's own OpenAPI document: no 500, responses match the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from relance.api import create_app
from relance.config import Settings, get_settings, load_settings
from relance.db import session_scope
from relance.models import Campaign
from tests.support.api import new_api_key
from tests.support.engine import make_campaign, seed_contacts

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
AUTH: dict[str, str] = {}


def _schema(settings: Settings) -> Any:
    with session_scope(settings) as session:
        category = seed_contacts(session, 3)
        make_campaign(session, [category])
        # A finished campaign too, so that lifecycle routes meet more than one state.
        session.add(
            Campaign(
                name="done",
                message_1="x",
                reply_window_seconds=60,
                status="cancelled",
                placeholder_defaults={},
            )
        )
    AUTH["Authorization"] = f"Bearer {new_api_key(settings)}"
    # Every route, the event stream included: it ends after EVENT_STREAM_MAX_SECONDS.
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))


@pytest.fixture
def short_streams(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("EVENT_STREAM_MAX_SECONDS", "0.2")
    get_settings.cache_clear()
    yield load_settings()
    get_settings.cache_clear()


def test_no_server_error_and_schema_conformance(short_streams: Settings) -> None:
    schema = _schema(short_streams)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    assert any(op.path.endswith("/events") for op in operations)
    for operation in operations:

        @given(case=operation.as_strategy())
        @hsettings(
            max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=CHECKS)

        try:
            fuzz()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
