"""Wassenger adapter: send through ``POST /v1/messages`` (its webhooks: ``wassenger_webhooks``)."""

from __future__ import annotations

import httpx

from relance.providers import http
from relance.providers.base import OutboundMessage, PermanentError, ProviderError, SendResult

# No codes of its own: the HTTP status says it all. 401/403 a bad or revoked API key; 402 the
# plan allows no more messages: every further send would fail the same way, so the campaign
# pauses.
ERROR_CODES = http.ErrorCodes(stop_statuses=frozenset({401, 402, 403}))


class WassengerProvider(http.HttpProvider):
    """Sends texts through the Wassenger API (WhatsApp Web or WABA devices)."""

    name = "wassenger"

    @property
    def messages_url(self) -> str:
        return http.join_url(self._settings.wassenger_api_url, "v1/messages")

    def send(self, message: OutboundMessage) -> SendResult:
        """Queue one text with Wassenger; answer its message id or raise a typed ProviderError."""
        api_key = self._settings.wassenger_api_key
        if not api_key:
            raise PermanentError(
                "config", "WASSENGER_API_KEY must be set to send with Wassenger", stops_sender=True
            )
        # Cloud API templates have no Wassenger equivalent here: the rendered text goes.
        body = {"phone": message.to, "message": message.text}
        if self._settings.wassenger_device:  # several numbers: the sender's device sends
            body["device"] = self._settings.wassenger_device
        response = self._post(self.messages_url, json=body, headers={"Token": api_key})
        if response.is_success:
            return SendResult(provider_message_id=http.required_id(response, "id"))
        raise error_for(response)


def error_for(response: httpx.Response) -> ProviderError:
    """Map a failed Wassenger response onto RateLimited, RetryableError or PermanentError."""
    status = response.status_code
    payload = http.json_object(response)
    error_code = payload.get("errorCode") or payload.get("error")
    label = error_code if isinstance(error_code, str) and error_code else f"http_{status}"
    message = payload.get("message")
    text = f"HTTP {status}: {message if isinstance(message, str) else response.text[:200]}"
    return http.classify(
        ERROR_CODES, status, None, label, text, http.retry_after_seconds(response.headers)
    )
