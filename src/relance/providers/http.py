"""What the HTTP adapters share: one reused client, typed transport errors, response helpers."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from relance.config import Settings
from relance.providers.base import PermanentError, ProviderError, RateLimited, RetryableError

DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


class HttpProvider:
    """An adapter over one ``httpx.Client``: keep-alive connections are reused across sends."""

    name: str

    def __init__(
        self,
        settings: Settings,
        client: httpx.Client | None = None,
        *,
        timeout: httpx.Timeout | float | None = None,
    ) -> None:
        self._settings = settings
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout or DEFAULT_TIMEOUT)

    def _post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST, turning transport failures into RetryableError with what is known of them."""
        try:
            return self._client.post(url, **kwargs)
        except httpx.ConnectTimeout as exc:  # nothing left this machine
            raise RetryableError("connect_timeout", f"could not connect in time: {exc}") from exc
        except httpx.TimeoutException as exc:  # the provider may have sent it: outcome unknown
            raise RetryableError("timeout", f"{type(exc).__name__}: no answer in time") from exc
        except httpx.TransportError as exc:
            raise RetryableError("network", f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            self._client.close()


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it is not one."""
    try:
        payload = response.json()
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}


def required_id(response: httpx.Response, key: str) -> str:
    """The message id a successful send answered; unreadable means the outcome is unknown."""
    value = json_object(response).get(key)
    if not isinstance(value, str) or not value:
        raise RetryableError("bad_response", f"no '{key}' in: {response.text[:200]}")
    return value


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The ``Retry-After`` header in seconds (delta or HTTP date), or None."""
    raw = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if raw is None or not raw.strip():
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def join_url(base: str, *parts: str) -> str:
    """``base`` (a setting, with or without a trailing slash) and path parts, joined by '/'."""
    return "/".join([base.rstrip("/"), *parts])


@dataclass(frozen=True)
class ErrorCodes:
    """What a provider's error codes mean; its HTTP status decides for the codes not listed."""

    rate_limited: frozenset[int] = frozenset()
    stops_sender: frozenset[int] = frozenset()  # no send from this sender can succeed
    retryable: frozenset[int] = frozenset()
    permanent: frozenset[int] = frozenset()  # this recipient cannot be sent to
    stop_statuses: frozenset[int] = frozenset({401, 403})  # bad or revoked credentials


def classify(
    codes: ErrorCodes,
    status: int,
    code: int | None,
    label: str,
    text: str,
    retry_after: float | None,
) -> ProviderError:
    """A failed send's typed error: RateLimited, RetryableError or PermanentError.

    The code decides first, in this order (rate limit, sender stopped, retryable, permanent),
    then the HTTP status: 429 is a rate limit, 5xx and 408 are transient, ``stop_statuses``
    stop the sender, any other 4xx is permanent for the recipient.
    """
    if code in codes.rate_limited or status == 429:
        return RateLimited(label, text, retry_after)
    if code in codes.stops_sender:
        return PermanentError(label, text, stops_sender=True)
    if code in codes.retryable or status >= 500 or status == 408:
        return RetryableError(label, text)
    if code in codes.permanent:
        return PermanentError(label, text)
    return PermanentError(label, text, stops_sender=status in codes.stop_statuses)
