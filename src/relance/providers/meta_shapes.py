"""Reading a Cloud API webhook body: required keys, nested objects and lists, times, keys.

A malformed shape is a 400 naming where it is, never a 500: every parser of a Meta field goes
through these.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from relance.providers.base import WebhookRejected


def timestamp(raw: Any) -> datetime:
    try:
        return datetime.fromtimestamp(int(raw), UTC)
    except (TypeError, ValueError, OverflowError):
        return datetime.now(UTC)


def require(obj: Mapping[str, Any], key: str, where: str) -> Any:
    if not isinstance(obj, Mapping) or key not in obj:
        raise WebhookRejected(400, f"malformed webhook: {where}.{key} is missing")
    return obj[key]


def object_at(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """An optional nested object: absent gives {}, any other shape is malformed (400, not 500)."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebhookRejected(400, f"malformed webhook: {where}.{key} must be an object")
    return value


def list_at(obj: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookRejected(400, f"malformed webhook: {where}.{key} must be a list")
    return value


def objects_at(obj: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    """An optional list of objects; an element of another shape is malformed."""
    found = list_at(obj, key, where)
    for i, item in enumerate(found):
        if not isinstance(item, Mapping):
            raise WebhookRejected(400, f"malformed webhook: {where}.{key}[{i}] must be an object")
    return found


def text_at(obj: Mapping[str, Any], key: str) -> str:
    """A scalar as text ("" when absent or null): Meta sends some ids as numbers."""
    value = obj.get(key)
    return "" if value is None or isinstance(value, Mapping | list) else str(value)


def digest_key(kind: str, *parts: Any) -> str:
    """A dedup key for what carries no id of its own (an error report, an account update):
    the same body posted again gives the same key, so Meta's retry is a duplicate."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=True, default=str)
    kind = re.sub(r"[^a-z0-9_]", "", kind.lower())[:40] or "field"  # a field's name is theirs
    return f"meta:{kind}:sha256:{hashlib.sha256(canonical.encode()).hexdigest()}"
