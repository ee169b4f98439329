"""The rules of senders, pure (no I/O): how a campaign's recipients are spread over its
numbers, Meta's messaging limit, and what a quality or account signal does to a sender.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

# --- Spreading recipients --------------------------------------------------------------------

Share = tuple[int | None, int]  # (sender, weight); None: the default sender


def bounds(shares: Sequence[Share]) -> list[tuple[int, int | None]]:
    """Cumulative weights: position ``p`` of a cycle of ``sum(weights)`` goes to the first
    sender whose bound exceeds it."""
    if not shares or any(weight < 1 for _, weight in shares):
        raise ValueError("a campaign needs at least one sender, each of weight >= 1")
    out, total = [], 0
    for sender, weight in shares:
        total += weight
        out.append((total, sender))
    return out


def sender_at(position: int, shares: Sequence[Share]) -> int | None:
    """The sender of the recipient at ``position`` (0-based, in contact id order): each cycle
    of ``sum(weights)`` recipients gives each sender exactly its weight, so the spread is
    deterministic and never off by more than one cycle."""
    table = bounds(shares)
    slot = position % table[-1][0]
    return next(sender for bound, sender in table if slot < bound)


# --- Meta's messaging limit ------------------------------------------------------------------

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class LimitRoom:
    room: int  # Message 1s (new users) that may go now
    resumes_at: datetime | None  # when room opens again, if none now


def messaging_room(limit: int, opened: Sequence[datetime], now: datetime) -> LimitRoom:
    """How many more unique users may be messaged outside their service window now.

    ``opened``: when each user counted in the moving 24 h was first messaged (one entry per
    user). A limit of 0 means none. Message 2s answer a reply, inside the service window:
    they never come here and are never held.
    """
    if limit <= 0:
        return LimitRoom(room=1 << 30, resumes_at=None)
    inside = sorted(at for at in opened if at > now - WINDOW)
    room = limit - len(inside)
    if room > 0:
        return LimitRoom(room=room, resumes_at=None)
    # The oldest users leave the window one by one: room opens when enough have left.
    return LimitRoom(room=0, resumes_at=inside[-room] + WINDOW)


def limit_reason(limit: int, resumes_at: datetime) -> str:
    return (
        f"messaging limit {limit} per 24 h reached, resumes at "
        f"{resumes_at.isoformat(timespec='seconds')}"
    )


# --- Quality and account signals ------------------------------------------------------------

Status = Literal["active", "slowed", "paused", "stopped"]
Signal = Literal["flagged", "unflagged", "red", "green", "restricted", "restored", "disconnected"]
PERSON = "paused by a person"
# Meta's messaging limit tiers; None: unlimited (no limit to hold).
TIERS: dict[str, int | None] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
HIGH_THROUGHPUT = 1000.0  # messages/s per number after Meta's throughput upgrade


def signal_of(kind: Literal["quality", "account"], event: str, detail: str) -> Signal | None:
    """What one of Meta's events says of a sender's health, if anything.

    Quality: FLAGGED (the quality fell: the limit will drop unless it recovers within 7 days),
    UNFLAGGED (it recovered). Account: a restriction or a disabled account stops sending; its
    lifting or a reinstatement lets it send again; a deleted or disconnected account stops.
    A violation warning slows, like a flag (a restriction often follows)."""
    event = event.upper()
    if kind == "quality":
        return {"FLAGGED": "flagged", "UNFLAGGED": "unflagged"}.get(event)  # type: ignore[return-value]
    if event == "ACCOUNT_RESTRICTION":
        return "restricted" if detail else "restored"  # an empty restriction list: lifted
    if event == "DISABLED_UPDATE":
        if "REINSTATE" in detail.upper():
            return "restored"
        return "restricted" if "DISABLE" in detail.upper() else None
    if event in ("ACCOUNT_DELETED", "PARTNER_REMOVED", "ACCOUNT_OFFBOARDED"):
        return "disconnected"
    if event == "ACCOUNT_RECONNECTED":
        return "restored"
    if event == "ACCOUNT_VIOLATION":
        return "flagged"
    return None


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str | None


def after_signal(
    current: Status,
    reason: str | None,
    signal: Signal,
    detail: str,
    on_red: Literal["slow", "pause"],
) -> Verdict:
    """A sender's status and reason after a quality or account signal from Meta.

    Red quality or a flag slows its Message 1s (or pauses them, by setting); green or
    unflagged lifts that. A restriction or a disconnection stops the sender at once; only its
    lifting (or a person) makes it send again. A person's pause stays until a person lifts it.
    """
    words = f": {detail}" if detail else ""
    if signal in ("restricted", "disconnected"):
        return Verdict("stopped", f"Meta {signal} the account{words}")
    if current == "stopped":
        return Verdict("active", None) if signal == "restored" else Verdict(current, reason)
    if current == "paused" and reason == PERSON:
        return Verdict(current, reason)
    if signal in ("red", "flagged"):
        status: Status = "paused" if on_red == "pause" else "slowed"
        word = "quality red" if signal == "red" else "flagged by Meta"
        return Verdict(status, f"{word}{words}")
    if current in ("slowed", "paused") and signal in ("green", "unflagged", "restored"):
        return Verdict("active", None)
    return Verdict(current, reason)
