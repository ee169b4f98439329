"""Inbound webhooks, as far as providers go: the route, the signature on the raw body, the parse.

What the events then do is campaign logic: ``relance.campaigns.inbound``.
"""

from __future__ import annotations

from collections.abc import Mapping

from relance.config import SIMULATOR_APP_SECRET, Settings
from relance.providers import meta_webhooks, twilio_webhooks, wassenger_webhooks
from relance.providers.base import WebhookRejected
from relance.providers.events import ProviderEvent


def check_route(provider: str, settings: Settings) -> None:
    """Only the configured provider has a webhook: any other answers 404, body unread.

    The simulator signs with a public secret: its route open beside a real provider would let
    anyone forge replies and stop words.
    """
    if provider != settings.provider:
        raise WebhookRejected(404, f"no webhook for provider {provider[:40]!r} here")


def verify(
    provider: str, settings: Settings, headers: Mapping[str, str], body: bytes, url: str
) -> None:
    """Refuse (WebhookRejected) another provider's route, and anything unsigned or wrongly
    signed: what the inbox may append, before a byte of the body is parsed."""
    check_route(provider, settings)
    if provider in ("meta", "simulator"):
        secret = settings.meta_app_secret
        if provider == "meta" and secret == SIMULATOR_APP_SECRET:
            secret = ""  # the public default must never let a forged Meta webhook in
        meta_webhooks.verify_signature(headers, body, secret)
    elif provider == "wassenger":
        wassenger_webhooks.verify_wassenger(settings, headers, body, url)
    elif provider == "twilio":
        twilio_webhooks.verify_twilio(settings, headers, body, url)
    else:
        raise AssertionError(f"RELANCE_PROVIDER {provider!r} has no webhook parser")


def parse(provider: str, body: bytes, url: str) -> list[ProviderEvent]:
    """The events of a verified body (WebhookRejected if it is malformed)."""
    if provider in ("meta", "simulator"):
        return meta_webhooks.parse(body)
    if provider == "wassenger":
        return list(wassenger_webhooks.parse_wassenger(body))
    if provider == "twilio":
        return list(twilio_webhooks.parse_twilio(body, url))
    raise AssertionError(f"RELANCE_PROVIDER {provider!r} has no webhook parser")


def needs_url(provider: str) -> bool:
    """Does this provider's parser read the URL the body was posted to (Twilio's does)?"""
    return provider == "twilio"


def verify_and_parse(
    provider: str, settings: Settings, headers: Mapping[str, str], body: bytes, url: str
) -> list[ProviderEvent]:
    """Refuse (WebhookRejected) another provider's route, and anything unsigned, wrongly
    signed or malformed."""
    verify(provider, settings, headers, body, url)
    return parse(provider, body, url)
