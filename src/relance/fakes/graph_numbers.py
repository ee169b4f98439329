"""The fake Graph API's phone numbers: ``GET /{version}/{phone_number_id}?fields=...``.

Answers like Meta: the requested fields the number has, with its ``id``; Meta's code 100
error (HTTP 400) for an id it does not know. A test sets a number's fields in
``FakeGraph.numbers`` (``whatsapp_business_manager_messaging_limit``, ``quality_rating``,
``throughput``: ``{"level": "STANDARD"}``...) and changes them as Meta would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

NUMBER_PATH = re.compile(r"^/v[0-9.]+/([0-9]+)$")


def unknown_object(object_id: str) -> tuple[int, bytes]:
    """Meta's answer for an object it does not have (or that the token may not read)."""
    error = {
        "message": f"Unsupported get request. Object with ID '{object_id}' does not exist, "
        "cannot be loaded due to missing permissions, or does not support this operation.",
        "type": "GraphMethodException",
        "code": 100,
        "error_subcode": 33,
        "fbtrace_id": "AbCdEfGhIjK",
    }
    return 400, json.dumps({"error": error}).encode()


def number_id(target: str) -> str | None:
    """The phone number id a GET asks for, if it is a phone number's path."""
    match = NUMBER_PATH.match(urlsplit(target).path)
    return match.group(1) if match else None


def number_fields(numbers: Mapping[str, Mapping[str, Any]], target: str) -> tuple[int, bytes]:
    phone_number_id = number_id(target) or ""
    if phone_number_id not in numbers:
        return unknown_object(phone_number_id)
    asked = parse_qs(urlsplit(target).query).get("fields", [""])[-1].split(",")
    known = numbers[phone_number_id]
    body = {name: known[name] for name in asked if name in known}
    return 200, json.dumps({**body, "id": phone_number_id}).encode()
