"""Webhook events by kind and outcome, and their lag from the provider's timestamp."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime

from relance.metrics.recorder import WEBHOOK_EVENTS, WEBHOOK_LAG, recorder


def count_webhook_events(
    provider: str, counted: Sequence[tuple[str, str, object]], now: datetime
) -> None:
    """``counted``: (kind, outcome, the event's timestamp if any). Called once the
    transaction commits, so a batch retried after a deadlock is counted once."""
    events: Counter[tuple[str, str]] = Counter()
    lags: defaultdict[str, list[float]] = defaultdict(list)
    for kind, outcome, stamp in counted:
        events[(kind, outcome)] += 1
        if outcome != "duplicate" and isinstance(stamp, datetime) and stamp.tzinfo:
            lags[kind].append(max(0.0, (now - stamp).total_seconds()))
    for (kind, outcome), n in events.items():
        recorder.inc(WEBHOOK_EVENTS, n, provider=provider, kind=kind, outcome=outcome)
    for kind, values in lags.items():
        recorder.observe_many(WEBHOOK_LAG, values, provider=provider, kind=kind)
