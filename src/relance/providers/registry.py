"""The configured provider of this process (one per process: connections are reused)."""

from __future__ import annotations

import threading

from relance.config import Settings
from relance.providers.base import Provider

_lock = threading.Lock()
_providers: dict[tuple[str, ...], Provider] = {}


def make_provider(settings: Settings) -> Provider:
    if settings.provider == "simulator":
        from relance.providers.simulator import SimulatorProvider

        return SimulatorProvider(settings)
    if settings.provider == "meta":
        from relance.providers.meta import MetaProvider

        return MetaProvider(settings)
    if settings.provider == "wassenger":
        from relance.providers.wassenger import WassengerProvider

        return WassengerProvider(settings)
    from relance.providers.twilio import TwilioProvider

    return TwilioProvider(settings)


def get_provider(settings: Settings) -> Provider:
    # One per number too: each sender sends with its own phone_number_id / From / device.
    key = (
        settings.provider,
        settings.effective_public_url,
        settings.simulator_webhook_url,
        settings.meta_phone_number_id,
        settings.twilio_from,
        settings.wassenger_device,
    )
    with _lock:
        if key not in _providers:
            _providers[key] = make_provider(settings)
        return _providers[key]
