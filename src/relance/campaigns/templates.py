"""WhatsApp templates as a campaign stores them, and the 24 h service window. Pure: no I/O.

A campaign's ``message_1_template`` and ``message_2_template`` are JSON objects (the request
schema is ``template_schemas.TemplateIn``); every text in them is personalised per contact like
a message (``{first_name}``, attributes) and bounded like one::

    {"name": "spring_promo", "language": "fr",
     "header": {"format": "text", "text": "{first_name}", "parameter_name": "name"},
            # or {"format": "image" | "video" | "document", "link": "https://...", "filename": ...}
     "parameters": ["{first_name}", "..."],                # the body's {{1}}, {{2}}... in order
     "named_parameters": {"first_name": "{first_name}"},   # or the body's {{first_name}}...
     "buttons": [{"index": 0, "sub_type": "quick_reply", "payload": "STOP_{city}"},
                 {"index": 1, "sub_type": "url", "text": "{code}"}]}

Values stored before headers and buttons existed (``{"name", "language", "parameters"}``)
read the same. A media link is sent as written (never personalised).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

# Meta allows a body parameter 1,024 characters when the template has components other than
# its body (32,768 when the body is the only one); relance holds every parameter to the lower
# limit. A text header (its parameter included) is at most 60 characters.
TEMPLATE_PARAMETER_MAX = 1024
TEMPLATE_PARAMETERS_MAX = 20
HEADER_TEXT_MAX = 60
BUTTONS_MAX = 10
MEDIA_FORMATS = ("image", "video", "document")
BUTTON_VALUE = {"quick_reply": "payload", "url": "text"}  # the parameter each sub_type carries
PARAMETER = "a WhatsApp template parameter"
# A template stored without its language (an edit used to keep only the fields it was given)
# meant the request's default.
DEFAULT_LANGUAGE = "fr"

# WhatsApp's customer service window: free-form messages only within 24 h of the contact's
# last message; outside it, only an approved template. relance knows of one such message: the
# reply that opened the window (``recipients.replied_at``).
SERVICE_WINDOW = timedelta(hours=24)
# The providers that enforce it and send Cloud API templates.
TEMPLATE_PROVIDERS = frozenset({"meta"})

MESSAGE_1_NEEDS_A_TEMPLATE = (
    "with the meta provider, Message 1 reaches contacts outside WhatsApp's 24 h customer "
    "service window, where WhatsApp delivers only approved templates: choose an approved "
    "template for message_1_template (GET /api/templates lists them)"
)


@dataclass(frozen=True)
class TemplateText:
    """One personalised text of a template: where it is, its limit, and what sets it."""

    field: str  # e.g. "message_1_template.buttons.1.text"
    text: str
    limit: int
    limited_by: str = PARAMETER


def _items(template: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, Any, int, str]]:
    """(field, value, limit, what) for each text of a stored template, as it is stored."""
    header = template.get("header")
    if isinstance(header, Mapping) and header.get("text") is not None:
        yield f"{prefix}.header.text", header["text"], HEADER_TEXT_MAX, "a WhatsApp template header"
    parameters = template.get("parameters") or []
    for i, value in enumerate(parameters if isinstance(parameters, list) else []):
        yield f"{prefix}.parameters.{i}", value, TEMPLATE_PARAMETER_MAX, PARAMETER
    named = template.get("named_parameters") or {}
    for name, value in named.items() if isinstance(named, Mapping) else []:
        yield f"{prefix}.named_parameters.{name}", value, TEMPLATE_PARAMETER_MAX, PARAMETER
    buttons = template.get("buttons") or []
    for i, button in enumerate(buttons if isinstance(buttons, list) else []):
        key = BUTTON_VALUE.get(str(button.get("sub_type"))) if isinstance(button, Mapping) else None
        if key and button.get(key) is not None:
            yield f"{prefix}.buttons.{i}.{key}", button[key], TEMPLATE_PARAMETER_MAX, PARAMETER


def template_texts(template: Mapping[str, Any] | None, prefix: str) -> list[TemplateText]:
    """Every text of a template that is personalised and sent, with its limit."""
    if not template:
        return []
    return [TemplateText(f, str(v), limit, what) for f, v, limit, what in _items(template, prefix)]


def render_template(
    template: Mapping[str, Any], prefix: str, fill: Callable[[TemplateText], str]
) -> dict[str, Any]:
    """The template with each of its texts replaced by ``fill(text)`` (one contact's values)."""
    language = template.get("language") or DEFAULT_LANGUAGE
    out: dict[str, Any] = {"name": template.get("name"), "language": language}
    filled = {t.field: fill(t) for t in template_texts(template, prefix)}
    header = template.get("header")
    if isinstance(header, Mapping):
        out["header"] = {**header}
        if f"{prefix}.header.text" in filled:
            out["header"]["text"] = filled[f"{prefix}.header.text"]
    parameters = template.get("parameters") or []
    out["parameters"] = [filled[f"{prefix}.parameters.{i}"] for i in range(len(parameters))]
    named = template.get("named_parameters") or {}
    if named:
        out["named_parameters"] = {n: filled[f"{prefix}.named_parameters.{n}"] for n in named}
    buttons = []
    for i, button in enumerate(template.get("buttons") or []):
        key = BUTTON_VALUE.get(button.get("sub_type"), "")
        field = f"{prefix}.buttons.{i}.{key}"
        buttons.append({**button, key: filled[field]} if field in filled else {**button})
    if buttons:
        out["buttons"] = buttons
    return out


def template_problems(template: Any, prefix: str) -> list[dict[str, str]]:
    """What makes a stored template unsendable, as ``{field, msg}`` (empty when nothing).

    The request schema refuses these already; a value stored before it did (or written to the
    database by hand) is refused at launch instead of failing at each send.
    """
    if template is None:
        return []
    if not isinstance(template, Mapping):
        return [{"field": prefix, "msg": f"{prefix} must be an object"}]
    problems = []
    if not isinstance(template.get("name"), str) or not template["name"]:
        problems.append({"field": f"{prefix}.name", "msg": f"{prefix}.name is required"})
    if not isinstance(template.get("language", DEFAULT_LANGUAGE), str):
        problems.append({"field": f"{prefix}.language", "msg": f"{prefix}.language: wrong type"})
    kinds: tuple[tuple[str, type], ...] = (
        ("header", dict),
        ("parameters", list),
        ("named_parameters", dict),
        ("buttons", list),
    )
    for key, kind in kinds:
        value = template.get(key)
        if value is not None and not isinstance(value, kind):
            problems.append({"field": f"{prefix}.{key}", "msg": f"{prefix}.{key}: wrong type"})
    header = template.get("header")
    if isinstance(header, dict) and header.get("format") not in ("text", *MEDIA_FORMATS):
        problems.append({"field": f"{prefix}.header", "msg": f"{prefix}.header: unknown format"})
    buttons = template.get("buttons")
    for i, button in enumerate(buttons if isinstance(buttons, list) else []):
        if not isinstance(button, dict) or button.get("sub_type") not in BUTTON_VALUE:
            field = f"{prefix}.buttons.{i}"
            problems.append({"field": field, "msg": f"{field}: not a quick_reply or url button"})
    for key in ("parameters", "named_parameters"):
        count = len(template.get(key) or ())
        if count > TEMPLATE_PARAMETERS_MAX:
            problems.append(
                {
                    "field": f"{prefix}.{key}",
                    "msg": f"{prefix} has {count} {key.replace('_', ' ')}; "
                    f"at most {TEMPLATE_PARAMETERS_MAX} are allowed",
                }
            )
    return problems


def message_1_problem(provider: str, template: Mapping[str, Any] | None) -> str | None:
    """Why Message 1 cannot go as configured on this provider, or None."""
    if provider in TEMPLATE_PROVIDERS and not template:
        return MESSAGE_1_NEEDS_A_TEMPLATE
    return None


Message2Route = Literal["text", "template", "refuse"]


def message_2_route(
    provider: str, replied_at: datetime | None, now: datetime, has_template: bool
) -> Message2Route:
    """How Message 2 goes at ``now``: as text inside the window the reply opened, else as
    ``message_2_template`` when the campaign has one, else not at all.

    Providers that do not enforce the window (the simulator, Wassenger...) always send text;
    so does a Message 2 whose reply time is unknown.
    """
    if provider not in TEMPLATE_PROVIDERS or replied_at is None:
        return "text"
    if now < replied_at + SERVICE_WINDOW:
        return "text"
    return "template" if has_template else "refuse"


def window_closed_reason(replied_at: datetime) -> str:
    closed = (replied_at + SERVICE_WINDOW).isoformat(timespec="seconds")
    return (
        f"Message 2 not sent: WhatsApp's 24 h customer service window opened by the reply at "
        f"{replied_at.isoformat(timespec='seconds')} closed at {closed} (pacing or a pause held "
        "it back), and the campaign has no message_2_template to send instead"
    )
