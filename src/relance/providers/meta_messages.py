"""One ``messages[]`` entry of a Cloud API webhook as an ``InteractionEvent``, for every type
Meta's webhook reference documents: what it says (text), the type's own kind (subtype) and its
machine value (payload). Whether it is an answer is the domain's call, not the parser's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from relance.providers.base import e164
from relance.providers.events import InteractionEvent, InteractionKind
from relance.providers.meta_shapes import object_at, objects_at, require, text_at, timestamp

# (subtype, text, payload) of one message, read from its type's object.
Content = tuple[str, str, str]
MAX_SUBTYPE = 40  # an unknown type's name, kept to name it


def _text(message: Mapping[str, Any], where: str) -> Content:
    return "", text_at(object_at(message, "text", where), "body"), ""


def _button(message: Mapping[str, Any], where: str) -> Content:
    button = object_at(message, "button", where)
    payload = text_at(button, "payload")
    return "", text_at(button, "text") or payload, payload


def _interactive(message: Mapping[str, Any], where: str) -> Content:
    inner = object_at(message, "interactive", where)
    at = f"{where}.interactive"
    subtype = text_at(inner, "type")
    if not subtype:  # older bodies name the reply by its key only
        subtype = next((k for k in ("button_reply", "list_reply", "nfm_reply") if k in inner), "")
    reply = object_at(inner, subtype, at) if subtype else {}
    if subtype == "nfm_reply":  # a WhatsApp Flow's answer: its body, and the flow's name
        return subtype, text_at(reply, "body"), text_at(reply, "name")
    reply_id = text_at(reply, "id")
    return subtype, text_at(reply, "title") or reply_id, reply_id


def _reaction(message: Mapping[str, Any], where: str) -> Content:
    # An empty or absent emoji is the removal of an earlier reaction.
    return "", text_at(object_at(message, "reaction", where), "emoji"), ""


def _media(message: Mapping[str, Any], where: str) -> Content:
    kind = text_at(message, "type")
    media = object_at(message, kind, where)
    subtype = "voice" if kind == "audio" and media.get("voice") is True else ""
    return subtype, text_at(media, "caption"), text_at(media, "id")


def _location(message: Mapping[str, Any], where: str) -> Content:
    location = object_at(message, "location", where)
    return "", text_at(location, "name") or text_at(location, "address"), ""


def _order(message: Mapping[str, Any], where: str) -> Content:
    order = object_at(message, "order", where)
    return "", text_at(order, "text"), text_at(order, "catalog_id")


def _system(message: Mapping[str, Any], where: str) -> Content:
    # user_changed_number, customer_changed_number, customer_identity_changed, and the
    # user_preference_changed form of a marketing preference (``marketing``: stop / resume).
    system = object_at(message, "system", where)
    return text_at(system, "type"), text_at(system, "body"), text_at(system, "marketing")


def _unsupported(message: Mapping[str, Any], where: str) -> Content:
    unsupported = object_at(message, "unsupported", where)
    errors = objects_at(message, "errors", where)
    code = text_at(errors[0], "code") if errors else ""
    return text_at(unsupported, "type") or code, "", ""


def _withdrawal(message: Mapping[str, Any], where: str) -> Content:
    # revoke and edit name the contact's own earlier message.
    kind = text_at(message, "type")
    inner = object_at(message, kind, where)
    edited = object_at(inner, "message", f"{where}.{kind}")
    return text_at(edited, "type"), "", text_at(inner, "original_message_id")


def _nothing(message: Mapping[str, Any], where: str) -> Content:
    return "", "", ""


READERS: dict[InteractionKind, Callable[[Mapping[str, Any], str], Content]] = {
    "text": _text,
    "button": _button,
    "interactive": _interactive,
    "reaction": _reaction,
    "image": _media,
    "video": _media,
    "audio": _media,
    "document": _media,
    "sticker": _media,
    "location": _location,
    "contacts": _nothing,
    "order": _order,
    "system": _system,
    "unsupported": _unsupported,
    "revoke": _withdrawal,
    "edit": _withdrawal,
    "request_welcome": _nothing,
}


def message_event(message: Mapping[str, Any], where: str) -> InteractionEvent:
    """The event of one inbound message, whatever its type (an unknown one is ``unknown``)."""
    wamid = str(require(message, "id", where))
    type_name = text_at(message, "type") or "text"
    context_id = text_at(object_at(message, "context", where), "id")
    kind: InteractionKind = "unknown"
    subtype = type_name[:MAX_SUBTYPE]
    text = payload = ""
    for known, read in READERS.items():
        if known == type_name:
            kind = known
            subtype, text, payload = read(message, where)
            break
    if kind == "reaction":
        context_id = text_at(object_at(message, "reaction", where), "message_id") or context_id
    return InteractionEvent(
        dedup_key=f"meta:message:{wamid}",
        from_phone=e164(str(require(message, "from", where))),
        kind=kind,
        text=text,
        timestamp=timestamp(message.get("timestamp")),
        context_provider_message_id=context_id or None,
        raw=dict(message),
        subtype=subtype,
        payload=payload,
    )
