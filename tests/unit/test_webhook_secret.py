"""The public simulator secret never authenticates a real Meta webhook."""

from __future__ import annotations

import pytest

from relance.config import SIMULATOR_APP_SECRET, load_settings
from relance.providers.base import WebhookRejected
from relance.providers.meta_webhooks import sign, status_payload
from relance.providers.webhooks import verify_and_parse


def test_default_secret_is_refused_for_meta_but_signs_the_simulator() -> None:
    settings = load_settings(meta_app_secret=SIMULATOR_APP_SECRET)
    body = str(status_payload([])).replace("'", '"').encode()
    headers = {"x-hub-signature-256": sign(body, SIMULATOR_APP_SECRET)}
    assert verify_and_parse("simulator", settings, headers, body, "") == []
    with pytest.raises(WebhookRejected) as refused:
        verify_and_parse("meta", settings, headers, body, "")
    assert refused.value.status_code == 403
    assert "META_APP_SECRET" in refused.value.detail
