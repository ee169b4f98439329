"""Webhook events by kind and outcome, and their lag from the provider's timestamp."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from relance.metrics.recorder import WEBHOOK_EVENTS, WEBHOOK_LAG, recorder


def count_webhook_events(
    provider: str, counted: Sequence[tuple[str, str, object]], now: datetime
) -> None:
    """``counted``: (kind, outcome, the event's timestamp if any). Called once the
    transaction commits, so a batch retried after a deadlock is counted once."""
    for kind, outcome, stamp in counted:
        recorder.inc(WEBHOOK_EVENTS, provider=provider, kind=kind, outcome=outcome)
        if outcome != "duplicate" and isinstance(stamp, datetime) and stamp.tzinfo:
            lag = max(0.0, (now - stamp).total_seconds())
            recorder.observe(WEBHOOK_LAG, lag, provider=provider, kind=kind)
