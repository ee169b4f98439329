"""The WhatsApp Cloud API's error codes: what each means for relance, with Meta's own words.

From Meta's reference (developers.facebook.com/documentation/business-messaging/whatsapp/
support/error-codes): each code with the title and details Meta gives, the HTTP status the Graph
API answers it with, and what relance does about it (``kind``: the sender backs off, stops, the
send is tried again, or this recipient fails; ``effect``: what the failure means beyond that).
Codes 200-299 (API permission) are a range, handled in ``meta.error_for``. Meta sends the same
codes synchronously (the Graph API's answer) or in a ``failed`` status webhook, sometimes both.

``error_body`` and ``status_error`` write them as Meta does, for the fake Graph API and tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from relance.providers.base import FailureEffect

Kind = Literal["rate_limited", "stops_sender", "retryable", "permanent"]
DOCS_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


@dataclass(frozen=True)
class MetaError:
    code: int
    title: str
    details: str
    kind: Kind
    http_status: int = 400
    effect: FailureEffect | None = None


_R: Kind = "rate_limited"
_S: Kind = "stops_sender"
_T: Kind = "retryable"
_P: Kind = "permanent"
CATALOGUE: tuple[MetaError, ...] = (
    # Authorization: nothing from this number goes until a human fixes the token or app.
    MetaError(0, "AuthException", "We were unable to authenticate the app user.", _S, 401),
    MetaError(3, "API Method", "Capability or permissions issue.", _S, 500),
    MetaError(
        10, "Permission Denied", "Permission is either not granted or has been removed.", _S, 403
    ),
    MetaError(190, "Access token has expired", "Your access token has expired.", _S, 401),
    # Throttling: the sender slows down; nothing failed (131048 also backs off for long).
    MetaError(4, "API Too Many Calls", "The app has reached its API call rate limit.", _R),
    MetaError(
        80007,
        "Rate limit issues",
        "The WhatsApp Business Account has reached its rate limit.",
        _R,
    ),
    MetaError(130429, "Rate limit hit", "Cloud API message throughput has been reached.", _R),
    MetaError(
        131048,
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be sent "
        "from this phone number. This may be because too many previous messages were blocked "
        "or flagged as spam.",
        _R,
    ),
    MetaError(
        131056,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone number "
        "in a short period of time.",
        _R,
    ),
    # Integrity: the account is restricted.
    MetaError(
        368,
        "Temporarily blocked for policies violations",
        "The WhatsApp Business Account associated with the app has been restricted or disabled "
        "for violating a platform policy.",
        _S,
        403,
    ),
    MetaError(
        130497,
        "Business account is restricted from messaging users in this country",
        "The WhatsApp Business Account is restricted from messaging to users in certain countries.",
        _P,
        403,
    ),
    MetaError(
        131031,
        "Account has been locked",
        "The WhatsApp Business Account associated with the app has been restricted or disabled "
        "for violating a platform policy, or we were unable to verify data included in the "
        "request against data set on the WhatsApp Business Account.",
        _S,
        403,
    ),
    # Meta's side failed: try again later.
    MetaError(1, "API Unknown", "Invalid request or possible server error.", _T),
    MetaError(2, "API Service", "Temporary due to downtime or due to being overloaded.", _T, 503),
    MetaError(
        131000, "Something went wrong", "Message failed to send due to an unknown error.", _T, 500
    ),
    MetaError(131016, "Service unavailable", "A service is temporarily unavailable.", _T, 500),
    MetaError(
        131057, "Account in maintenance mode", "Business Account is in maintenance mode.", _T, 500
    ),
    MetaError(
        133004, "Server temporarily unavailable", "Server is temporarily unavailable.", _T, 503
    ),
    # The sending number itself cannot send.
    MetaError(
        33, "Parameter value is not valid", "The business phone number has been deleted.", _S
    ),
    MetaError(
        131005, "Access denied", "Permission is either not granted or has been removed.", _S, 403
    ),
    MetaError(
        131037,
        "WhatsApp provided number needs display name approval before message can be sent.",
        "The business phone number's display name has not been approved yet.",
        _S,
    ),
    MetaError(
        131042,
        "Business eligibility payment issue",
        "There was an error related to your payment method.",
        _S,
    ),
    MetaError(
        131045,
        "Incorrect certificate",
        "Message failed to send due to a phone number registration error.",
        _S,
    ),
    MetaError(
        133010,
        "Phone number Not Registered",
        "The phone number is not registered on the WhatsApp Business Platform.",
        _S,
    ),
    # This message to this recipient will never go.
    MetaError(
        100,
        "Invalid parameter",
        "The request included one or more unsupported or misspelled parameters.",
        _P,
    ),
    MetaError(
        130472,
        "User's number is part of an experiment",
        "Message was not sent as part of an experiment.",
        _P,
    ),
    MetaError(
        131008, "Required parameter is missing", "The request is missing a required parameter.", _P
    ),
    MetaError(
        131009, "Parameter value is not valid", "One or more parameter values are invalid.", _P
    ),
    MetaError(
        131021, "Recipient cannot be sender", "Sender and recipient phone number is the same.", _P
    ),
    MetaError(
        131026,
        "Message Undeliverable",
        "Unable to deliver message. Reasons can include: the recipient phone number is not a "
        "WhatsApp phone number; the recipient has not accepted our new Terms of Service and "
        "Privacy Policy; the recipient is using an old WhatsApp version.",
        _P,
    ),
    MetaError(
        131030,
        "Recipient phone number not in allowed list",
        "Add the recipient phone number to the recipient list and try again.",
        _P,
    ),
    MetaError(
        131047,
        "Re-engagement message",
        "More than 24 hours have passed since the recipient last replied to the sender number.",
        _P,
        effect="needs_template",
    ),
    MetaError(
        131049,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
        _P,
        effect="limited",
    ),
    MetaError(
        131050,
        "User has stopped receipt of marketing messages",
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
        "messages on WhatsApp from your business.",
        _P,
        effect="opted_out",
    ),
    MetaError(131051, "Unsupported message type", "Unsupported message type.", _P),
    MetaError(131052, "Media download error", "Unable to download the media sent by the user.", _P),
    MetaError(131053, "Media upload error", "Unable to upload the media used in the message.", _P),
    MetaError(
        132000,
        "Template Param Count Mismatch",
        "The number of variable parameter values included in the request did not match the "
        "number of variable parameters defined in the template.",
        _P,
    ),
    MetaError(
        132001,
        "Template does not exist",
        "The template does not exist in the specified language or the template has not been "
        "approved.",
        _P,
        404,
    ),
    MetaError(132005, "Template Hydrated Text Too Long", "Translated text is too long.", _P),
    MetaError(
        132007,
        "Template Format Character Policy Violated",
        "Template content violates a WhatsApp policy.",
        _P,
    ),
    MetaError(
        132012,
        "Template Parameter Format Mismatch",
        "Variable parameter values formatted incorrectly.",
        _P,
    ),
    MetaError(
        132015,
        "Template is Paused",
        "Template is paused due to low quality so it cannot be sent in a template message.",
        _P,
    ),
    MetaError(
        132016,
        "Template is Disabled",
        "Template has been paused too many times due to low quality and is now permanently "
        "disabled.",
        _P,
    ),
    MetaError(
        135000,
        "Generic user error",
        "Message failed to send because of an unknown error with your request parameters.",
        _P,
    ),
    # The On-Premises API's re-engagement code, which older integrations still report.
    MetaError(
        470,
        "Re-engagement message",
        "More than 24 hours have passed since the customer last replied to this number.",
        _P,
        effect="needs_template",
    ),
)
BY_CODE: dict[int, MetaError] = {error.code: error for error in CATALOGUE}
FAILURE_EFFECTS: dict[str, FailureEffect] = {
    str(error.code): error.effect for error in CATALOGUE if error.effect is not None
}


def codes(kind: Kind) -> frozenset[int]:
    return frozenset(error.code for error in CATALOGUE if error.kind == kind)


def describe(error: Mapping[str, Any]) -> str | None:
    """Meta's words for one error object (a Graph API ``error``, a webhook ``errors[]`` entry):
    its message or title, its details when they say more, and the trace id support asks for."""
    message = error.get("message") or error.get("title")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, Mapping) else None
    parts = [str(message)] if message else []
    if details and details != message:
        parts.append(str(details))
    if error.get("fbtrace_id"):
        parts.append(f"fbtrace_id={error['fbtrace_id']}")
    return " | ".join(parts) or None


def error_body(code: int, fbtrace_id: str = "AbCdEfGhIjKlMnOpQrStUvW") -> dict[str, Any]:
    """The Graph API's answer to a send that fails with ``code``, as Meta writes it."""
    error = BY_CODE[code]
    return {
        "error": {
            "message": f"(#{code}) {error.title}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": error.details},
            "fbtrace_id": fbtrace_id,
        }
    }


def status_error(code: int) -> dict[str, Any]:
    """One ``errors[]`` entry of a ``failed`` status webhook, as Meta writes it."""
    error = BY_CODE[code]
    return {
        "code": code,
        "title": error.title,
        "message": error.title,
        "error_data": {"details": error.details},
        "href": DOCS_URL,
    }
