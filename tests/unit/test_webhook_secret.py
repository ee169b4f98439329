"""The simulator's public secret authenticates nothing unless the provider is the simulator."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relance.config import SIMULATOR_APP_SECRET, Settings, load_settings
from relance.providers.base import WebhookRejected
from relance.providers.events import NoticeEvent
from relance.providers.meta_webhooks import sign, status_payload
from relance.providers.webhooks import verify_and_parse

BODY = json.dumps(status_payload([])).encode()
SIGNED_BY_THE_SIMULATOR = {"x-hub-signature-256": sign(BODY, SIMULATOR_APP_SECRET)}
REAL = {
    "meta": {
        "meta_access_token": "token",
        "meta_phone_number_id": "106540352242922",
        "meta_app_secret": "the-meta-app-secret",
        "meta_verify_token": "verify",
    },
    "twilio": {"twilio_account_sid": "AC1", "twilio_auth_token": "t", "twilio_from": "+1555"},
    "wassenger": {"wassenger_api_key": "k", "wassenger_webhook_secret": "s"},
}


def test_the_default_secret_signs_the_simulator_when_it_is_the_provider() -> None:
    settings = load_settings(meta_app_secret=SIMULATOR_APP_SECRET, provider="simulator")

    accepted = verify_and_parse("simulator", settings, SIGNED_BY_THE_SIMULATOR, BODY, "")
    assert [type(e) for e in accepted] == [NoticeEvent]  # an empty update, stored as seen
    for other in ("meta", "twilio", "wassenger"):
        with pytest.raises(WebhookRejected) as refused:
            verify_and_parse(other, settings, SIGNED_BY_THE_SIMULATOR, BODY, "")
        assert refused.value.status_code == 404


@pytest.mark.parametrize("provider", sorted(REAL))
def test_with_a_real_provider_the_simulator_route_does_not_exist(provider: str) -> None:
    settings = load_settings(provider=provider, **REAL[provider])

    with pytest.raises(WebhookRejected) as refused:
        verify_and_parse("simulator", settings, SIGNED_BY_THE_SIMULATOR, BODY, "")

    assert refused.value.status_code == 404
    assert "simulator" in refused.value.detail


def test_meta_never_accepts_the_simulator_secret_even_if_start_up_was_bypassed() -> None:
    # Start-up refuses this configuration; the webhook check does not rely on that alone.
    values: dict[str, Any] = {**REAL["meta"], "meta_app_secret": SIMULATOR_APP_SECRET}
    settings = Settings.model_construct(**values, provider="meta")

    with pytest.raises(WebhookRejected) as refused:
        verify_and_parse("meta", settings, SIGNED_BY_THE_SIMULATOR, BODY, "")

    assert refused.value.status_code == 403
    assert "META_APP_SECRET" in refused.value.detail
