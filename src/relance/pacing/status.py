"""What the sender's pace says right now, for stats and the blocking list."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from relance.config import Settings
from relance.pacing.domain import Wait, local_day, next_midnight
from relance.pacing.limiter import LimiterUnavailable, make_limiter


def pacing_status(settings: Settings, session: Session | None = None) -> dict[str, Any] | None:
    """None when sending may go on; else why it waits and until when (e.g. the daily quota)."""
    limiter = make_limiter(settings)
    now = time.time()
    try:
        state = limiter.state(session)
    except LimiterUnavailable as exc:
        return {"reason": "limiter_unavailable", "until": None, "detail": str(exc)}
    rules = limiter.rules
    wait: Wait | None = None
    if (
        rules.daily_quota
        and state.day == local_day(now, rules.timezone)
        and state.day_count >= rules.daily_quota
    ):
        wait = Wait(next_midnight(now, rules.timezone), "daily_quota")
    elif state.blocked_until > now:
        wait = Wait(state.blocked_until, "rate_limited")
    elif state.pause_reason == "batch_pause" and state.next_at > now:
        wait = Wait(state.next_at, "batch_pause")
    if wait is None:
        return None
    until = datetime.fromtimestamp(wait.until, UTC)
    label = {
        "daily_quota": "paused by quota",
        "rate_limited": "slowed by provider rate limit",
        "batch_pause": "pausing between batches",
    }.get(wait.reason, wait.reason)
    return {"reason": wait.reason, "until": until, "detail": f"{label} until {until.isoformat()}"}
