"""The Cloud API webhooks about our numbers and account, as ``SenderEvent``s.

``phone_number_quality_update``: a number was flagged or unflagged (its quality fell, or
recovered), its messaging limit went up or down, its throughput was upgraded. The number is
named by ``display_phone_number``; the limit by ``max_daily_conversations_per_business`` (the
business portfolio's, since 2025), else the older ``current_limit``.

``account_update``: the WhatsApp Business Account was restricted (``restriction_info``),
disabled or reinstated (``ban_info.waba_ban_state``), warned of a violation
(``violation_info``), deleted or disconnected from the partner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relance.providers.events import SenderEvent
from relance.providers.meta_shapes import digest_key, object_at, objects_at, text_at, timestamp

SENDER_FIELDS = ("phone_number_quality_update", "account_update")


def sender_event(
    field: str, value: Mapping[str, Any], entry: Mapping[str, Any], where: str
) -> SenderEvent:
    """One number's or the account's news; its key: the whole value, with the entry's time
    (Meta gives these no id: a retry repeats both)."""
    event = text_at(value, "event")
    key = digest_key(field, text_at(entry, "id"), text_at(entry, "time"), value)
    when = timestamp(entry.get("time"))
    if field == "phone_number_quality_update":
        return SenderEvent(
            dedup_key=key,
            signal="quality",
            event=event,
            timestamp=when,
            display_phone_number=text_at(value, "display_phone_number"),
            current_limit=text_at(value, "max_daily_conversations_per_business")
            or text_at(value, "current_limit"),
            detail=f"{text_at(value, 'old_limit')} -> {text_at(value, 'current_limit')}"
            if text_at(value, "old_limit")
            else "",
            raw=dict(value),
        )
    return SenderEvent(
        dedup_key=key,
        signal="account",
        event=event,
        timestamp=when,
        display_phone_number=text_at(value, "phone_number"),
        detail=_account_detail(value, where),
        raw=dict(value),
    )


def _account_detail(value: Mapping[str, Any], where: str) -> str:
    """What Meta says of the account: the restriction types, the ban state, the violation."""
    restrictions = [
        text_at(r, "restriction_type") for r in objects_at(value, "restriction_info", where)
    ]
    if restrictions:
        return ", ".join(r for r in restrictions if r)
    ban = object_at(value, "ban_info", where)
    if ban:
        state = ban.get("waba_ban_state")
        states = state if isinstance(state, list) else [state]
        return ", ".join(str(s) for s in states if s)
    violation = object_at(value, "violation_info", where)
    if violation:
        return text_at(violation, "violation_type")
    return ""
