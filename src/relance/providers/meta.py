"""WhatsApp Cloud API (Meta) adapter: the send side.

``POST {META_GRAPH_URL}/{META_API_VERSION}/{META_PHONE_NUMBER_ID}/messages`` with a bearer token.
Graph API errors (``{"error": {"code", "message", "error_subcode", "error_data"}}``) are mapped
once, here, onto the three errors the engine knows (see ``error_for``), from the table of Meta's
codes in ``meta_errors.py``. The webhook side lives in ``meta_webhooks.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from relance.providers import meta_errors
from relance.providers.base import (
    OutboundMessage,
    PermanentError,
    ProviderError,
    RateLimited,
    RetryableError,
    SendResult,
)
from relance.providers.http import (
    ErrorCodes,
    HttpProvider,
    classify,
    join_url,
    retry_after_seconds,
)

# 131048: Meta saw this number's messages flagged as spam; sending again soon makes it worse,
# so the sender keeps quiet for an hour unless the response says otherwise.
SPAM_BACKOFF_SECONDS = 3600.0

SPAM_CODES = frozenset({131048})
# Every code of Meta's reference, each with Meta's title, in ``meta_errors.CATALOGUE``.
ERROR_CODES = ErrorCodes(
    rate_limited=meta_errors.codes("rate_limited"),
    stops_sender=meta_errors.codes("stops_sender"),
    retryable=meta_errors.codes("retryable"),
    permanent=meta_errors.codes("permanent"),
)


class MetaProvider(HttpProvider):
    """Sends texts and templates through the WhatsApp Cloud API."""

    name = "meta"

    @property
    def messages_url(self) -> str:
        s = self._settings
        return join_url(s.meta_graph_url, s.meta_api_version, s.meta_phone_number_id, "messages")

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; answer the ``wamid`` or raise a typed ProviderError."""
        s = self._settings
        if not s.meta_access_token or not s.meta_phone_number_id:
            raise PermanentError(
                "config",
                "META_ACCESS_TOKEN and META_PHONE_NUMBER_ID must be set to send with Meta",
                stops_sender=True,
            )
        body = request_body(message)
        headers = {"Authorization": f"Bearer {s.meta_access_token}"}
        response = self._post(self.messages_url, json=body, headers=headers)
        if response.is_success:
            return SendResult(provider_message_id=_message_id(response))
        raise error_for(response)


def request_body(message: OutboundMessage) -> dict[str, Any]:
    """The Cloud API JSON for one text or template message."""
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "".join(ch for ch in message.to if ch.isdigit()),
        # Echoed back in status webhooks, so a status finds our message even before the
        # wamid is stored (a webhook can beat the send's own commit).
        "biz_opaque_callback_data": str(message.message_id),
    }
    if message.template is None:
        body["type"] = "text"
        body["text"] = {"body": message.text, "preview_url": False}
        return body
    body["type"] = "template"
    body["template"] = _template(message.template)
    return body


def _template(template: Mapping[str, Any]) -> dict[str, Any]:
    """Cloud API's ``template`` object from a rendered campaign template
    (``campaigns/templates.py``): header, body parameters by position or by name, button
    parameters by index, in the order Meta's examples give them."""
    name = template.get("name")
    language = template.get("language")
    if not isinstance(name, str) or not name or not isinstance(language, str) or not language:
        raise PermanentError("template", "a template needs a non-empty 'name' and 'language'")
    parameters = template.get("parameters") or []
    named = template.get("named_parameters") or {}
    if not isinstance(parameters, list) or not isinstance(named, Mapping):
        raise PermanentError("template", "template parameters must be a list or an object")
    components = []
    header = template.get("header")
    if isinstance(header, Mapping):
        components.append({"type": "header", "parameters": [_header_parameter(header)]})
    body = [{"type": "text", "text": str(p)} for p in parameters] + [
        {"type": "text", "parameter_name": str(n), "text": str(v)} for n, v in named.items()
    ]
    if body:
        components.append({"type": "body", "parameters": body})
    buttons = template.get("buttons") or []
    for button in sorted(buttons, key=lambda b: int(b.get("index", 0))):
        components.append(_button(button))
    result: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        result["components"] = components
    return result


def _header_parameter(header: Mapping[str, Any]) -> dict[str, Any]:
    kind = header.get("format")
    if kind == "text":
        parameter = {"type": "text", "text": str(header.get("text", ""))}
        if header.get("parameter_name"):
            parameter["parameter_name"] = str(header["parameter_name"])
        return parameter
    if kind in ("image", "video", "document") and header.get("link"):
        media = {"link": str(header["link"])}
        if kind == "document" and header.get("filename"):
            media["filename"] = str(header["filename"])
        return {"type": kind, kind: media}
    raise PermanentError("template", f"unsendable template header: {dict(header)!r}"[:300])


def _button(button: Mapping[str, Any]) -> dict[str, Any]:
    sub_type = button.get("sub_type")
    if sub_type == "quick_reply":
        parameter = {"type": "payload", "payload": str(button.get("payload", ""))}
    elif sub_type == "url":
        parameter = {"type": "text", "text": str(button.get("text", ""))}
    else:
        raise PermanentError("template", f"unsendable template button: {dict(button)!r}"[:300])
    index = str(button.get("index", 0))
    return {"type": "button", "sub_type": sub_type, "index": index, "parameters": [parameter]}


def _message_id(response: httpx.Response) -> str:
    try:
        payload = response.json()
        wamid = payload["messages"][0]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        wamid = None
    if not isinstance(wamid, str) or not wamid:
        # Accepted but unreadable: the outcome is unknown, which the engine treats like a
        # timeout (its unknown-outcome policy decides), rather than a certain failure.
        raise RetryableError("bad_response", f"no messages[0].id in: {response.text[:200]}")
    return wamid


def error_for(response: httpx.Response) -> ProviderError:
    """Map a failed Graph API response onto RateLimited, RetryableError or PermanentError."""
    status = response.status_code
    error = _graph_error(response)
    code = _int(error.get("code"))
    label = str(code) if code is not None else f"http_{status}"
    text = _error_text(error, response)
    retry_after = retry_after_seconds(response.headers)
    if code in SPAM_CODES:
        return RateLimited(label, text, retry_after or SPAM_BACKOFF_SECONDS)
    if code is not None and 200 <= code <= 299 and status != 429:  # permission errors
        return PermanentError(label, text, stops_sender=True)
    return classify(ERROR_CODES, status, code, label, text, retry_after)


def _graph_error(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        return {}
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def _error_text(error: Mapping[str, Any], response: httpx.Response) -> str:
    described = meta_errors.describe(error)
    return described or f"HTTP {response.status_code}: {response.text[:200]}"


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
