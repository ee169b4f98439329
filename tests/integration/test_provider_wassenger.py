"""WassengerProvider against a local fake Wassenger API: request shape, parsed id, error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from relance.config import Settings
from relance.providers.base import (
    OutboundMessage,
    PermanentError,
    RateLimited,
    RetryableError,
)
from relance.providers.wassenger import WassengerProvider
from tests.support.http_server import FakeHttpServer, FakeResponse
from tests.support.providers import TEXT, recorded, send_expecting

API_KEY = "wassenger-test-key"
fixture = partial(recorded, "wassenger")


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"wassenger_api_url": url, "wassenger_api_key": API_KEY}
    return Settings(**(values | overrides))


@pytest.fixture
def provider(server: FakeHttpServer) -> Iterator[WassengerProvider]:
    wassenger = WassengerProvider(settings_for(server.url))
    yield wassenger
    wassenger.close()


def test_send_request_and_parsed_id(provider: WassengerProvider, server: FakeHttpServer) -> None:
    server.respond(FakeResponse(201, json=fixture("send_response.json")))

    result = provider.send(TEXT)

    assert result.provider_message_id == "6a0c3f1e9b2d4c5a7e8f9012"
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/v1/messages"
    assert request.headers["token"] == API_KEY
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"phone": "+33612345678", "message": "Bonjour Ana"}


def test_a_template_message_goes_as_its_text(
    provider: WassengerProvider, server: FakeHttpServer
) -> None:
    server.respond(FakeResponse(201, json=fixture("send_response.json")))
    template = {"name": "relance_1", "language": "fr", "parameters": ["Ana"]}

    provider.send(OutboundMessage(message_id=1, to="+33612345678", text="Salut", template=template))

    assert server.requests[0].json() == {"phone": "+33612345678", "message": "Salut"}


def test_429_with_retry_after_is_rate_limited(
    provider: WassengerProvider, server: FakeHttpServer
) -> None:
    response = FakeResponse(
        429, json={"status": 429, "message": "Too many requests"}, headers={"Retry-After": "7"}
    )

    error = send_expecting(provider, server, response)

    assert isinstance(error, RateLimited)
    assert error.retry_after == 7


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_server_errors_are_retryable(
    provider: WassengerProvider, server: FakeHttpServer, status: int
) -> None:
    response = FakeResponse(status, json={"status": status, "message": "device not connected"})

    error = send_expecting(provider, server, response)

    assert type(error) is RetryableError
    assert "device not connected" in error.text


def test_timeout_is_retryable(server: FakeHttpServer) -> None:
    server.respond(FakeResponse(201, json=fixture("send_response.json"), delay=5))
    provider = WassengerProvider(settings_for(server.url), timeout=0.2)

    with pytest.raises(RetryableError) as caught:
        provider.send(TEXT)
    provider.close()

    assert type(caught.value) is RetryableError
    assert caught.value.code == "timeout"


def test_invalid_number_fails_the_recipient_only(
    provider: WassengerProvider, server: FakeHttpServer
) -> None:
    body = {"status": 400, "errorCode": "invalid_phone", "message": "Invalid phone number"}

    error = send_expecting(provider, server, FakeResponse(400, json=body))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is False
    assert error.code == "invalid_phone"
    assert "Invalid phone number" in error.text


@pytest.mark.parametrize("status", [401, 402, 403])
def test_auth_and_plan_errors_stop_the_sender(
    provider: WassengerProvider, server: FakeHttpServer, status: int
) -> None:
    response = FakeResponse(status, json={"status": status, "message": "Invalid API token"})

    error = send_expecting(provider, server, response)

    assert isinstance(error, PermanentError)
    assert error.stops_sender is True
    assert error.code == f"http_{status}"


def test_success_without_an_id_is_an_unknown_outcome(
    provider: WassengerProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(201, json={"status": "queued"}))

    assert type(error) is RetryableError
    assert error.code == "bad_response"


def test_missing_api_key_stops_the_sender_without_a_request(server: FakeHttpServer) -> None:
    provider = WassengerProvider(settings_for(server.url, wassenger_api_key=""))

    with pytest.raises(PermanentError) as caught:
        provider.send(TEXT)
    provider.close()

    assert caught.value.stops_sender is True
    assert "WASSENGER_API_KEY" in caught.value.text
    assert server.requests == []
