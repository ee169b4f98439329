"""What the provider adapter tests share: one outbound text, recorded bodies, error checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from relance.providers import meta_errors
from relance.providers.base import OutboundMessage, Provider, ProviderError
from tests.support.http_server import FakeHttpServer, FakeResponse

FIXTURES = Path(__file__).parents[1] / "fixtures"
TEXT = OutboundMessage(message_id=42, to="+33612345678", text="Bonjour Ana")


def recorded(provider: str, name: str) -> Any:
    """A body recorded from ``provider``'s API (tests/fixtures/<provider>/<name>), parsed."""
    return json.loads((FIXTURES / provider / name).read_text())


def send_expecting(
    provider: Provider, server: FakeHttpServer, response: FakeResponse
) -> ProviderError:
    """The error ``provider`` raises when its API answers ``TEXT`` with ``response``."""
    server.respond(response)
    with pytest.raises(ProviderError) as caught:
        provider.send(TEXT)
    return caught.value


def meta_error(code: int) -> FakeResponse:
    """The Graph API's answer to a send failing with ``code``: Meta's body and HTTP status."""
    return FakeResponse(meta_errors.BY_CODE[code].http_status, json=meta_errors.error_body(code))
