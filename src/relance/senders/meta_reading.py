"""What the Graph API says of one of our numbers, and what it changes on its sender. Pure.

``GET /{phone_number_id}?fields=whatsapp_business_manager_messaging_limit,quality_rating,
throughput`` answers ``{"whatsapp_business_manager_messaging_limit": "TIER_250",
"quality_rating": "GREEN", "throughput": {"level": "STANDARD"}, "id": "..."}``. A field Meta
leaves out, or a value relance does not know (a tier Meta adds later), changes nothing: the
configured value stays in force.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from relance.senders.domain import HIGH_THROUGHPUT, TIERS, Signal, Status, after_signal

FIELDS = "whatsapp_business_manager_messaging_limit,quality_rating,throughput"
QUALITIES = ("GREEN", "YELLOW", "RED", "UNKNOWN")
# STANDARD: 80 messages/s, the sender keeps the settings' pace (MAX_SENDS_PER_SECOND); HIGH:
# Meta's upgrade to 1,000. A throughput a person set on the sender is theirs: left alone.
LEVELS: dict[str, float | None] = {"STANDARD": None, "HIGH": HIGH_THROUGHPUT}
METAS = frozenset(LEVELS.values())


@dataclass(frozen=True)
class NumberReading:
    tier: str | None = None  # a tier of ``TIERS``
    quality: str | None = None  # one of ``QUALITIES``
    level: str | None = None  # a level of ``LEVELS``

    @property
    def empty(self) -> bool:
        return self.tier is None and self.quality is None and self.level is None


def read_number(body: Mapping[str, Any]) -> NumberReading:
    """The fields of Meta's answer relance knows; anything else is left out."""
    tier = body.get("whatsapp_business_manager_messaging_limit")
    quality = body.get("quality_rating")
    throughput = body.get("throughput")
    level = throughput.get("level") if isinstance(throughput, Mapping) else None
    return NumberReading(
        tier=tier if isinstance(tier, str) and tier in TIERS else None,
        quality=quality if isinstance(quality, str) and quality in QUALITIES else None,
        level=level if isinstance(level, str) and level in LEVELS else None,
    )


@dataclass(frozen=True)
class SenderState:
    status: Status
    paused_reason: str | None
    quality_rating: str
    throughput_per_second: float | None


QUALITY_SIGNALS: dict[str, Signal] = {"RED": "red", "GREEN": "green"}


def sender_changes(
    state: SenderState, reading: NumberReading, on_red: Literal["slow", "pause"]
) -> dict[str, Any]:
    """The sender's columns the reading changes (the limit is the portfolio's: see
    ``portfolio_limit``). A quality rating acts when it changes, like Meta's webhook: a
    person who resumed a red number is not overruled at every reading."""
    changes: dict[str, Any] = {}
    if reading.quality is not None and reading.quality != state.quality_rating:
        changes["quality_rating"] = reading.quality
        signal = QUALITY_SIGNALS.get(reading.quality)
        if signal is not None:
            detail = "read from the Graph API"
            verdict = after_signal(state.status, state.paused_reason, signal, detail, on_red)
            if (verdict.status, verdict.reason) != (state.status, state.paused_reason):
                changes.update(status=verdict.status, paused_reason=verdict.reason)
    current = state.throughput_per_second
    if reading.level is not None and current in METAS and LEVELS[reading.level] != current:
        changes["throughput_per_second"] = LEVELS[reading.level]
    return changes


def portfolio_limit(reading: NumberReading) -> tuple[bool, int | None]:
    """(known, limit): the business portfolio's messaging limit, None when unlimited."""
    if reading.tier is None:
        return False, None
    return True, TIERS[reading.tier]
