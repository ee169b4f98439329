"""The Cloud API webhook fields besides messages and statuses, each as events to store.

``user_preferences`` (a contact stops or resumes marketing messages), the template signals
(``message_template_status_update``, ``message_template_quality_update``,
``template_category_update``), and what is only noted: an ``errors``-only value, echoes of what
the business sent from the WhatsApp Business app (``smb_message_echoes``), ``calls``,
``account_update``, and any field we do not know (stored, so that it is seen).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from relance.providers.base import e164
from relance.providers.events import (
    InteractionEvent,
    NoticeEvent,
    ProviderEvent,
    TemplateEvent,
)
from relance.providers.meta_shapes import (
    digest_key,
    object_at,
    objects_at,
    require,
    text_at,
    timestamp,
)

TEMPLATE_SIGNALS: dict[str, Literal["status", "quality", "category"]] = {
    "message_template_status_update": "status",
    "message_template_quality_update": "quality",
    "template_category_update": "category",
}


def preference_events(value: Mapping[str, Any], where: str) -> list[ProviderEvent]:
    """``user_preferences``: a contact stopped or resumed marketing messages."""
    events: list[ProviderEvent] = []
    for k, pref in enumerate(objects_at(value, "user_preferences", where)):
        at = f"{where}.user_preferences[{k}]"
        wa_id = str(require(pref, "wa_id", at))
        category, choice = text_at(pref, "category"), text_at(pref, "value")
        stamp = text_at(pref, "timestamp")
        events.append(
            InteractionEvent(
                # No id of its own: who, what and when make it one (a retry repeats all three).
                dedup_key=f"meta:preference:{wa_id}:{category}:{choice}:{stamp}",
                from_phone=e164(wa_id),
                kind="user_preferences",
                text=text_at(pref, "detail"),
                timestamp=timestamp(pref.get("timestamp")),
                raw=dict(pref),
                subtype=category,
                payload=choice,
            )
        )
    return events


def template_event(
    field: str, value: Mapping[str, Any], entry: Mapping[str, Any], where: str
) -> TemplateEvent:
    """One template signal: its new status, quality score or category, and why."""
    signal = TEMPLATE_SIGNALS[field]
    template_id = text_at(value, "message_template_id")
    if signal == "status":
        new, previous = text_at(value, "event"), ""
        other = object_at(value, "other_info", where)
        rejection = object_at(value, "rejection_info", where)
        reasons = (
            text_at(value, "reason"),
            text_at(other, "title"),
            text_at(other, "description"),
            text_at(rejection, "reason"),
        )
        reason = " · ".join(r for r in reasons if r and r != "NONE")
    elif signal == "quality":
        new = text_at(value, "new_quality_score")
        previous = text_at(value, "previous_quality_score")
        reason = ""
    else:
        new = text_at(value, "new_category")
        previous = text_at(value, "previous_category")
        # An impending change says what the category will be, and when.
        correct = text_at(value, "correct_category")
        reason = f"to become {correct}" if correct else ""
    stamp = text_at(entry, "time")
    return TemplateEvent(
        dedup_key=f"meta:template:{signal}:{template_id}:{new}:{stamp}",
        signal=signal,
        template_id=template_id,
        name=text_at(value, "message_template_name"),
        language=text_at(value, "message_template_language"),
        value=new,
        timestamp=timestamp(entry.get("time")),
        previous=previous,
        reason=reason,
        raw=dict(value),
    )


def notice_events(
    field: str, value: Mapping[str, Any], entry: Mapping[str, Any], where: str
) -> list[ProviderEvent]:
    """What is stored and never applied: echoes, calls, account updates, unknown fields."""
    if field == "smb_message_echoes":
        return [
            NoticeEvent(
                dedup_key=f"meta:echo:{require(echo, 'id', f'{where}.message_echoes[{k}]')}",
                kind=field,
                detail=text_at(echo, "type")[:40],
                timestamp=timestamp(echo.get("timestamp")),
                raw=dict(echo),
            )
            for k, echo in enumerate(objects_at(value, "message_echoes", where))
        ]
    if field == "calls":
        calls = [
            (call, text_at(call, "event") or text_at(call, "status"))
            for key in ("calls", "statuses")
            for call in objects_at(value, key, where)
        ]
        return [
            NoticeEvent(
                dedup_key=f"meta:call:{require(call, 'id', f'{where}.calls')}:{what}",
                kind=field,
                detail=what[:40],
                timestamp=timestamp(call.get("timestamp")),
                raw=dict(call),
            )
            for call, what in calls
        ]
    detail = text_at(value, "event") if field == "account_update" else field
    return [
        NoticeEvent(
            dedup_key=digest_key(field, text_at(entry, "id"), text_at(entry, "time"), value),
            kind=field[:40],
            detail=detail[:40],
            timestamp=timestamp(entry.get("time")),
            raw=dict(value),
        )
    ]


def errors_event(value: Mapping[str, Any], entry: Mapping[str, Any], where: str) -> NoticeEvent:
    """An ``errors``-only value: Meta could not process something (a system or account level
    problem), about no message in particular."""
    errors = objects_at(value, "errors", where)
    first = errors[0] if errors else {}
    code, title = text_at(first, "code"), text_at(first, "title") or text_at(first, "message")
    return NoticeEvent(
        dedup_key=digest_key("errors", text_at(entry, "id"), value),
        kind="errors",
        detail=f"{code} {title}".strip()[:200],
        timestamp=timestamp(entry.get("time")),
        raw=dict(value),
    )
