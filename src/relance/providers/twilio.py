"""Twilio (WhatsApp sender) adapter: send through the Messages API.

Sends are form-encoded ``POST /2010-04-01/Accounts/{SID}/Messages.json`` with HTTP basic auth and
a ``StatusCallback`` pointing at ``{PUBLIC_URL}/webhooks/twilio?m=<our message id>``
(``twilio_webhooks``).
"""

from __future__ import annotations

import httpx

from relance.providers.base import (
    FailureEffect,
    OutboundMessage,
    PermanentError,
    ProviderError,
    SendResult,
)
from relance.providers.http import (
    ErrorCodes,
    HttpProvider,
    classify,
    join_url,
    json_object,
    required_id,
    retry_after_seconds,
)
from relance.providers.twilio_webhooks import OUR_ID_PARAM

WEBHOOK_PATH = "/webhooks/twilio"

ERROR_CODES = ErrorCodes(
    # 20429 too many requests; 63017 / 63018 account or WhatsApp sender rate limit exceeded.
    rate_limited=frozenset({20429, 63017, 63018}),
    # 20003 authentication, 20005 account not active, 20404 account (SID) not found,
    # 21212 / 21606 / 21659 / 63007 the From number cannot send, 63112 Meta disabled the account.
    stops_sender=frozenset({20003, 20005, 20404, 21212, 21606, 21659, 63007, 63112}),
    retryable=frozenset({20500, 20503}),
    # 21211 invalid To, 21408 region not enabled, 21610 recipient unsubscribed, 21614 not a
    # mobile, 63003 To not on the channel, 63016 outside the 24 h window, 63024 invalid
    # recipient, 63049 Meta chose not to deliver. Any other 4xx is also permanent.
    permanent=frozenset({21211, 21408, 21610, 21614, 63003, 63016, 63024, 63049}),
)
# Twilio's names for Meta's 131049 (Meta chose not to deliver this marketing message) and
# 131047 / 470 (outside the 24 h window: only a template may go).
FAILURE_EFFECTS: dict[str, FailureEffect] = {"63049": "limited", "63016": "needs_template"}


class TwilioProvider(HttpProvider):
    """Sends WhatsApp texts through Twilio's Programmable Messaging API."""

    name = "twilio"

    @property
    def messages_url(self) -> str:
        s = self._settings
        return join_url(
            s.twilio_api_url, "2010-04-01/Accounts", s.twilio_account_sid, "Messages.json"
        )

    @property
    def status_callback_url(self) -> str:
        return self._settings.effective_public_url + WEBHOOK_PATH

    def send(self, message: OutboundMessage) -> SendResult:
        """Create one Message resource; answer its ``sid`` or raise a typed ProviderError."""
        s = self._settings
        if not (s.twilio_account_sid and s.twilio_auth_token and s.twilio_from):
            raise PermanentError(
                "config",
                "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM must be set to send with "
                "Twilio",
                stops_sender=True,
            )
        form = {
            "From": whatsapp_address(s.twilio_from),
            "To": whatsapp_address(message.to),
            "Body": message.text,  # Cloud API templates are not Twilio Content: the text goes
            # Our id rides in the callback URL (Twilio signs the URL with it), so a status
            # finds its message even if we died before storing the SID, as
            # biz_opaque_callback_data does with Meta.
            "StatusCallback": callback_url_for(self.status_callback_url, message.message_id),
        }
        auth = (s.twilio_account_sid, s.twilio_auth_token)
        response = self._post(self.messages_url, data=form, auth=auth)
        if response.is_success:
            return SendResult(provider_message_id=required_id(response, "sid"))
        raise error_for(response)


def callback_url_for(webhook_url: str, message_id: int) -> str:
    return f"{webhook_url}?{OUR_ID_PARAM}={message_id}"


def whatsapp_address(number: str) -> str:
    """``whatsapp:+E164`` from a number written with or without the prefix or the '+'."""
    digits = "".join(ch for ch in number.removeprefix("whatsapp:") if ch.isdigit())
    return f"whatsapp:+{digits}"


def error_for(response: httpx.Response) -> ProviderError:
    """Map a failed Twilio response onto RateLimited, RetryableError or PermanentError."""
    status = response.status_code
    payload = json_object(response)
    code = payload.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    label = str(code) if code is not None else f"http_{status}"
    message = payload.get("message")
    text = message if isinstance(message, str) and message else response.text[:200]
    if isinstance(payload.get("more_info"), str):
        text = f"{text} ({payload['more_info']})"
    return classify(ERROR_CODES, status, code, label, text, retry_after_seconds(response.headers))
