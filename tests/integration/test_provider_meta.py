"""MetaProvider against a local fake Graph API: request shape, parsed wamid, every error mapping."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from functools import partial
from typing import Any

import httpx
import pytest

from relance.config import Settings
from relance.providers import meta_errors
from relance.providers.base import (
    OutboundMessage,
    PermanentError,
    RateLimited,
    RetryableError,
)
from relance.providers.failures import LIMITED_CODES, effect_of
from relance.providers.meta import SPAM_BACKOFF_SECONDS, MetaProvider
from tests.support.http_server import FakeHttpServer, FakeResponse
from tests.support.providers import TEXT, meta_error, recorded, send_expecting

PHONE_NUMBER_ID = "106540352242922"
TOKEN = "EAAG-test-token"
WAMID = "wamid.HBgLMzM2MTIzNDU2NzgVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA"
fixture = partial(recorded, "meta")


def graph_error(code: int, message: str = "error", **extra: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": "OAuthException", "code": code, **extra}}


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "meta_graph_url": url,
        "meta_api_version": "v21.0",
        "meta_phone_number_id": PHONE_NUMBER_ID,
        "meta_access_token": TOKEN,
    }
    return Settings(**(values | overrides))


@pytest.fixture
def provider(server: FakeHttpServer) -> Iterator[MetaProvider]:
    meta = MetaProvider(settings_for(server.url))
    yield meta
    meta.close()


def test_text_message_request_and_parsed_wamid(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    server.respond(FakeResponse(200, json=fixture("send_response.json")))

    result = provider.send(TEXT)

    assert result.provider_message_id == WAMID
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == f"/v21.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "33612345678",
        "biz_opaque_callback_data": "42",
        "type": "text",
        "text": {"body": "Bonjour Ana", "preview_url": False},
    }


def test_template_message_carries_body_parameters(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    server.respond(FakeResponse(200, json=fixture("send_response.json")))
    message = OutboundMessage(
        message_id=7,
        to="+14155550123",
        text="ignored for templates",
        template={"name": "relance_1", "language": "fr", "parameters": ["Ana", "lundi"]},
    )

    provider.send(message)

    body = server.requests[0].json()
    assert body["type"] == "template"
    assert "text" not in body
    assert body["biz_opaque_callback_data"] == "7"
    assert body["to"] == "14155550123"
    assert body["template"] == {
        "name": "relance_1",
        "language": {"code": "fr"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "lundi"}],
            }
        ],
    }


def test_template_without_parameters_sends_no_components(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    server.respond(FakeResponse(200, json=fixture("send_response.json")))
    template = {"name": "hello_world", "language": "en_US", "parameters": []}

    provider.send(OutboundMessage(message_id=1, to="+33612345678", text="", template=template))

    assert server.requests[0].json()["template"] == {
        "name": "hello_world",
        "language": {"code": "en_US"},
    }


def _sent_template(
    provider: MetaProvider, server: FakeHttpServer, template: dict[str, Any]
) -> dict[str, Any]:
    """The ``template`` object of the request the adapter made for ``template``."""
    server.respond(FakeResponse(200, json=fixture("send_response.json")))
    provider.send(OutboundMessage(message_id=9, to="+33612345678", text="", template=template))
    body = server.requests[-1].json()
    assert (body["type"], body["messaging_product"], body["to"]) == (
        "template",
        "whatsapp",
        "33612345678",
    )
    template_object: dict[str, Any] = body["template"]
    return template_object


# The request bodies below are those of Meta's "Send message templates" guide and template
# components reference: header parameters (text, image/video/document by link), body
# parameters by position or with parameter_name, button parameters by sub_type and index.


def test_template_with_a_media_header_body_and_buttons(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    template = {
        "name": "summer_catalogue",
        "language": "fr",
        "header": {"format": "image", "link": "https://example.com/summer.jpg"},
        "parameters": ["Ana"],
        "buttons": [
            {"index": 1, "sub_type": "quick_reply", "payload": "STOP_PROMO"},
            {"index": 0, "sub_type": "url", "text": "summer2023"},
        ],
    }

    assert _sent_template(provider, server, template) == {
        "name": "summer_catalogue",
        "language": {"code": "fr"},
        "components": [
            {
                "type": "header",
                "parameters": [
                    {"type": "image", "image": {"link": "https://example.com/summer.jpg"}}
                ],
            },
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
            {
                "type": "button",
                "sub_type": "url",
                "index": "0",
                "parameters": [{"type": "text", "text": "summer2023"}],
            },
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "1",
                "parameters": [{"type": "payload", "payload": "STOP_PROMO"}],
            },
        ],
    }


def test_template_with_named_parameters(provider: MetaProvider, server: FakeHttpServer) -> None:
    template = {
        "name": "order_confirmation",
        "language": "en_US",
        "header": {"format": "text", "text": "December 1st", "parameter_name": "sale_start_date"},
        "named_parameters": {"first_name": "Pablo", "order_number": "860198-230332"},
    }

    assert _sent_template(provider, server, template) == {
        "name": "order_confirmation",
        "language": {"code": "en_US"},
        "components": [
            {
                "type": "header",
                "parameters": [
                    {"type": "text", "parameter_name": "sale_start_date", "text": "December 1st"}
                ],
            },
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "parameter_name": "first_name", "text": "Pablo"},
                    {"type": "text", "parameter_name": "order_number", "text": "860198-230332"},
                ],
            },
        ],
    }


@pytest.mark.parametrize(
    ("header", "parameter"),
    [
        ({"format": "text", "text": "Summer Sale"}, {"type": "text", "text": "Summer Sale"}),
        (
            {"format": "video", "link": "https://example.com/v.mp4"},
            {"type": "video", "video": {"link": "https://example.com/v.mp4"}},
        ),
        (
            {"format": "document", "link": "https://example.com/t.pdf", "filename": "terms.pdf"},
            {
                "type": "document",
                "document": {"link": "https://example.com/t.pdf", "filename": "terms.pdf"},
            },
        ),
    ],
)
def test_each_header_kind(
    provider: MetaProvider,
    server: FakeHttpServer,
    header: dict[str, Any],
    parameter: dict[str, Any],
) -> None:
    template = {"name": "t", "language": "fr", "header": header, "parameters": []}

    sent = _sent_template(provider, server, template)

    assert sent["components"] == [{"type": "header", "parameters": [parameter]}]


@pytest.mark.parametrize(
    "template",
    [
        {"name": "t", "language": "fr", "header": {"format": "location"}},
        {"name": "t", "language": "fr", "buttons": [{"index": 0, "sub_type": "copy_code"}]},
        {"name": "", "language": "fr"},
    ],
)
def test_an_unsendable_template_fails_without_a_request(
    provider: MetaProvider, server: FakeHttpServer, template: dict[str, Any]
) -> None:
    with pytest.raises(PermanentError) as caught:
        provider.send(OutboundMessage(message_id=1, to="+33612345678", text="", template=template))

    assert caught.value.code == "template"
    assert caught.value.stops_sender is False
    assert server.requests == []


def test_http_429_with_retry_after_is_rate_limited(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(
        provider, server, FakeResponse(429, json=graph_error(4), headers={"Retry-After": "7"})
    )

    assert isinstance(error, RateLimited)
    assert error.retry_after == 7


def test_throughput_limit_130429_is_rate_limited(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=fixture("error_130429.json")))

    assert isinstance(error, RateLimited)
    assert error.code == "130429"
    assert error.retry_after is None
    assert "throughput" in error.text


@pytest.mark.parametrize("code", [131056, 80007, 4])
def test_other_rate_limits(provider: MetaProvider, server: FakeHttpServer, code: int) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=graph_error(code)))

    assert isinstance(error, RateLimited)
    assert error.code == str(code)


def test_spam_rate_limit_131048_backs_off_for_long(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=graph_error(131048)))

    assert isinstance(error, RateLimited)
    assert error.retry_after == SPAM_BACKOFF_SECONDS >= 3600


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"error": {"message": "An unknown error occurred", "code": 1}}),
        (500, graph_error(131000, "Something went wrong")),
        (503, graph_error(133004, "Server temporarily unavailable")),
        (400, graph_error(131016, "Service unavailable")),
        (502, None),
    ],
)
def test_server_side_failures_are_retryable(
    provider: MetaProvider, server: FakeHttpServer, status: int, body: Any
) -> None:
    response = FakeResponse(status, json=body, text="Bad Gateway")

    error = send_expecting(provider, server, response)

    assert type(error) is RetryableError


def test_timeout_is_retryable(server: FakeHttpServer) -> None:
    server.respond(FakeResponse(200, json=fixture("send_response.json"), delay=5))
    provider = MetaProvider(settings_for(server.url), timeout=0.2)

    with pytest.raises(RetryableError) as caught:
        provider.send(TEXT)
    provider.close()

    assert type(caught.value) is RetryableError
    assert caught.value.code == "timeout"


def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    provider = MetaProvider(settings_for(f"http://127.0.0.1:{closed_port}"), timeout=2)

    with pytest.raises(RetryableError) as caught:
        provider.send(TEXT)
    provider.close()

    assert type(caught.value) is RetryableError
    assert caught.value.code == "network"


def test_undeliverable_131026_fails_the_recipient_only(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=fixture("error_131026.json")))

    assert isinstance(error, PermanentError)
    assert error.code == "131026"
    assert error.stops_sender is False
    assert "Undeliverable" in error.text


@pytest.mark.parametrize("code", [131047, 470, 100, 131008, 131009, 131051, 132000, 132001])
def test_invalid_or_out_of_window_is_permanent(
    provider: MetaProvider, server: FakeHttpServer, code: int
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=graph_error(code)))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is False


# What each code of Meta's reference must do, written out rather than read from the catalogue.
EXPECTED = {
    "rate_limited": {4, 80007, 130429, 131048, 131056},
    "stops_sender": {0, 3, 10, 33, 190, 368, 131005, 131031, 131037, 131042, 131045, 133010},
    "retryable": {1, 2, 131000, 131016, 131057, 133004},
}


@pytest.mark.parametrize("error", meta_errors.CATALOGUE, ids=lambda e: str(e.code))
def test_every_code_of_metas_reference_answered_with_metas_body(
    provider: MetaProvider, server: FakeHttpServer, error: meta_errors.MetaError
) -> None:
    raised = send_expecting(provider, server, meta_error(error.code))

    assert raised.code == str(error.code)
    assert f"(#{error.code}) {error.title}" in raised.text
    assert error.details in raised.text and "fbtrace_id=" in raised.text
    if error.code in EXPECTED["rate_limited"]:
        assert isinstance(raised, RateLimited)
    elif error.code in EXPECTED["retryable"]:
        assert type(raised) is RetryableError
    else:
        assert isinstance(raised, PermanentError)
        assert raised.stops_sender is (error.code in EXPECTED["stops_sender"])


@pytest.mark.parametrize(
    ("code", "effect"),
    [(131049, "limited"), (131050, "opted_out"), (131047, "needs_template"), (131026, None)],
)
def test_what_a_failure_means_is_the_same_from_the_send_and_from_a_webhook(
    code: int, effect: str | None
) -> None:
    for provider in ("meta", "simulator"):
        assert effect_of(provider, str(code)) == effect
    assert effect_of("wassenger", str(code)) is None
    assert ("131049" in LIMITED_CODES) and ("63049" in LIMITED_CODES)


def test_expired_token_190_stops_the_sender(provider: MetaProvider, server: FakeHttpServer) -> None:
    error = send_expecting(provider, server, FakeResponse(401, json=fixture("error_190.json")))

    assert isinstance(error, PermanentError)
    assert error.code == "190"
    assert error.stops_sender is True
    assert "access token" in error.text


@pytest.mark.parametrize(("status", "code"), [(403, 10), (403, 200), (403, 294), (400, 131031)])
def test_account_level_errors_stop_the_sender(
    provider: MetaProvider, server: FakeHttpServer, status: int, code: int
) -> None:
    error = send_expecting(provider, server, FakeResponse(status, json=graph_error(code)))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is True


def test_unauthorized_without_a_graph_body_stops_the_sender(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(401, text="Unauthorized"))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is True
    assert error.code == "http_401"


def test_unknown_client_error_is_permanent_for_the_recipient(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(400, json=graph_error(999999)))

    assert isinstance(error, PermanentError)
    assert error.stops_sender is False


def test_success_without_an_id_is_an_unknown_outcome(
    provider: MetaProvider, server: FakeHttpServer
) -> None:
    error = send_expecting(provider, server, FakeResponse(200, json={"messages": []}))

    assert type(error) is RetryableError
    assert error.code == "bad_response"


def test_missing_credentials_stop_the_sender_without_a_request(server: FakeHttpServer) -> None:
    provider = MetaProvider(settings_for(server.url, meta_access_token=""))

    with pytest.raises(PermanentError) as caught:
        provider.send(TEXT)
    provider.close()

    assert caught.value.stops_sender is True
    assert "META_ACCESS_TOKEN" in caught.value.text
    assert server.requests == []


def test_one_client_serves_every_send_and_an_injected_one_is_left_open(
    server: FakeHttpServer,
) -> None:
    server.reset(default=FakeResponse(200, json=fixture("send_response.json")))
    client = httpx.Client(timeout=5)
    provider = MetaProvider(settings_for(server.url), client)

    provider.send(TEXT)
    provider.send(TEXT)
    provider.close()

    assert len(server.requests) == 2
    assert not client.is_closed
    client.close()
