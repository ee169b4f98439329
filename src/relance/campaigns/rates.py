"""The numbers that say how a campaign did: rates, time to reply, when it should end. Pure.

Rates are shares of the contacts Message 1 reached (``message_1_sent``): delivered, read and
replied; the Message 2 rate is the share of those who replied that got their Message 2. Each
is None while its denominator is zero, and never above 1 (a status counted twice elsewhere must
not show 104 %).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta


def share(part: int, whole: int) -> float | None:
    """``part / whole`` in [0, 1], rounded to 4 places; None when ``whole`` is zero."""
    if whole <= 0:
        return None
    return round(min(1.0, max(0.0, part / whole)), 4)


def rates(
    message_1_sent: int, delivered: int, read: int, replied: int, message_2_sent: int
) -> dict[str, float | None]:
    return {
        "delivery": share(delivered, message_1_sent),
        "read": share(read, message_1_sent),
        "reply": share(replied, message_1_sent),
        "message_2": share(message_2_sent, replied),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of ``values``: a value that occurred,
    never one interpolated between two. None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Remaining:
    """What a campaign still has to do, for its estimate."""

    status: str
    message_1_left: int  # recipients whose Message 1 is not sent yet
    open_recipients: int  # not final yet (queued, awaiting a reply, replied)
    last_message_1_sent_at: datetime | None
    reply_window_seconds: int
    has_message_2: bool


def estimated_finish(
    remaining: Remaining, now: datetime, last_send_at: datetime
) -> datetime | None:
    """When the campaign should complete: its last Message 1 goes at ``last_send_at`` (from
    the pace, the quota and what is left), then, with a Message 2, the reply window of that
    last contact closes (a contact who answers ends sooner, but nobody can say who will).

    None when nothing will happen by itself: finished, a draft, paused by a person.
    """
    if remaining.status != "sending" or remaining.open_recipients == 0:
        return None
    window = timedelta(seconds=remaining.reply_window_seconds)
    if remaining.message_1_left > 0:
        ends = max(now, last_send_at)
        return ends + window if remaining.has_message_2 else ends
    if remaining.has_message_2 and remaining.last_message_1_sent_at is not None:
        return max(now, remaining.last_message_1_sent_at + window)
    return now  # only Message 2s in flight: any moment now
