"""schemathesis against the app's own OpenAPI document: no 500, responses match the schema."""

from __future__ import annotations

from typing import Any

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
from relance.config import Settings
from relance.db import session_scope
from relance.models import Campaign
from tests.api_helpers import new_api_key
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
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))
    # The SSE stream of a live campaign never ends by design; it has its own tests.
    return schema.exclude(path_regex=r".*/events$")


def test_no_server_error_and_schema_conformance(settings: Settings) -> None:
    schema = _schema(settings)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
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
