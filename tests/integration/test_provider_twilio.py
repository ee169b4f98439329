"""TwilioProvider against a local fake Twilio API: request shape, parsed sid, error mapping."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from relance.config import Settings
from relance.providers.base import (
    PermanentError,
    RateLimited,
    RetryableError,
)
from relance.providers.twilio import TwilioProvider
from tests.support.http_server import FakeHttpServer, FakeResponse
from tests.support.providers import TEXT, recorded, send_expecting

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "twilio-test-token"
PUBLIC_URL = "https://relance.example.com"
fixture = partial(recorded, "twilio")


def twilio_error(code: int, status: int, message: str = "error") -> dict[str, Any]:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return {"code": code, "message": message, "more_info": more_info, "status": status}


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "twilio_api_url": url,
        "twilio_account_sid": SID,
        "twilio_auth_token": TOKEN,
        "twilio_from": "+14155238886",
        "public_url": PUBLIC_URL,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def provider(server: FakeHttpServer) -> Iterator[TwilioProvider]:
    twilio = TwilioProvider(settings_for(server.url))
    yield twilio
    twilio.close()


def test_send_request_and_parsed_sid(provider: TwilioProvider, server: FakeHttpServer) -> None:
    server.respond(FakeResponse(201, json=fixture("send_response.json")))

    result = provider.send(TEXT)

    assert result.provider_message_id == "SM3f1b2c4d5e6f708192a3b4c5d6e7f809"
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    basic = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form() == {
        "From": "whatsapp:+14155238886",
        "To": "whatsapp:+33612345678",
        "Body": "Bonjour Ana",
        # our message id rides in the callback URL, so a status finds it even without the SID
        "StatusCallback": "https://relance.example.com/webhooks/twilio?m=42",
    }


@pytest.mark.parametrize("written", ["whatsapp:+14155238886", "14155238886", "+1 415 523 8886"])
def test_twilio_from_gets_one_whatsapp_prefix(server: FakeHttpServer, written: str) -> None:
    server.respond(FakeResponse(201, json=fixture("send_response.json")))
    provider = TwilioProvider(settings_for(server.url, twilio_from=written))

    provider.send(TEXT)
    provider.close()

    assert server.requests[0].form()["From"] == "whatsapp:+14155238886"


def test_429_with_retry_after_is_rate_limited(
    provider: TwilioProvider, server: FakeHttpServer
) -> None:
    response = FakeResponse(
        429, json=twilio_error(20429, 429, "Too Many Requests"), headers={"Retry-After": "7"}
    )

    error = send_expecting(provider, server, response)

    assert isinstance(error, RateLimited)
    assert error.retry_after == 7
    assert error.code == "20429"


def test_whatsapp_sender_rate_limit_63018_is_rate_limited(
    provider: TwilioProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=twilio_error(63018, 400)))

    assert isinstance(error, RateLimited)
    assert error.retry_after is None


@pytest.mark.parametrize(
    ("status", "body"), [(500, twilio_error(20500, 500)), (503, twilio_error(20503, 503))]
)
def test_server_errors_are_retryable(
    provider: TwilioProvider, server: FakeHttpServer, status: int, body: dict[str, Any]
) -> None:
    error = send_expecting(provider, server, FakeResponse(status, json=body))

    assert type(error) is RetryableError


def test_a_500_without_a_body_is_retryable(
    provider: TwilioProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(500, text="Internal Server Error"))

    assert type(error) is RetryableError
    assert error.code == "http_500"


def test_timeout_is_retryable(server: FakeHttpServer) -> None:
    server.respond(FakeResponse(201, json=fixture("send_response.json"), delay=5))
    provider = TwilioProvider(settings_for(server.url), timeout=0.2)

    with pytest.raises(RetryableError) as caught:
        provider.send(TEXT)
    provider.close()

    assert type(caught.value) is RetryableError
    assert caught.value.code == "timeout"


def test_invalid_to_21211_fails_the_recipient_only(
    provider: TwilioProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=fixture("error_21211.json")))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is False
    assert error.code == "21211"
    assert "https://www.twilio.com/docs/errors/21211" in error.text


@pytest.mark.parametrize("code", [21614, 63003, 63016, 21610])
def test_recipient_errors_are_permanent(
    provider: TwilioProvider, server: FakeHttpServer, code: int
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=twilio_error(code, 400)))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is False


def test_authentication_20003_stops_the_sender(
    provider: TwilioProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(401, json=fixture("error_20003.json")))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is True
    assert error.code == "20003"


@pytest.mark.parametrize("code", [21606, 63007, 20404])
def test_a_sender_that_cannot_send_stops(
    provider: TwilioProvider, server: FakeHttpServer, code: int
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=twilio_error(code, 400)))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is True


def test_success_without_a_sid_is_an_unknown_outcome(
    provider: TwilioProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(201, json={"status": "queued"}))

    assert type(error) is RetryableError
    assert error.code == "bad_response"


def test_missing_credentials_stop_the_sender_without_a_request(server: FakeHttpServer) -> None:
    provider = TwilioProvider(settings_for(server.url, twilio_from=""))

    with pytest.raises(PermanentError) as caught:
        provider.send(TEXT)
    provider.close()

    assert caught.value.stops_sender is True
    assert "TWILIO_FROM" in caught.value.text
    assert server.requests == []
