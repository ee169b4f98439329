"""What Meta's quality and account webhooks do to our senders (the rules: ``domain``)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from relance.config import Settings
from relance.models import Sender, utcnow
from relance.providers.events import SenderEvent
from relance.senders.domain import HIGH_THROUGHPUT, TIERS, after_signal, signal_of
from relance.senders.service import by_display_number, set_portfolio_limit

log = logging.getLogger(__name__)


def apply_sender_event(
    session: Session, settings: Settings, event: SenderEvent, now: datetime | None = None
) -> str:
    """Update the senders the event names: status, limit, throughput. Idempotent: the same
    event twice leaves them as the first left them. Answers what it did, for the stored
    outcome."""
    now = now or utcnow()
    senders = by_display_number(session, settings, event.display_phone_number)
    about = event.display_phone_number or "the account"
    if not senders:
        return f"{event.event} for {about}: no sender has this display number"
    signal = signal_of(event.signal, event.event, event.detail)
    done = []
    for sender in senders:
        row = session.scalars(select(Sender).where(Sender.id == sender.id).with_for_update()).one()
        changes: dict[str, Any] = {}
        if signal is not None:
            verdict = after_signal(
                row.status,  # type: ignore[arg-type]
                row.paused_reason,
                signal,
                event.detail,
                settings.quality_red_action,
            )
            if (verdict.status, verdict.reason) != (row.status, row.paused_reason):
                changes.update(status=verdict.status, paused_reason=verdict.reason)
            if signal in ("flagged", "unflagged"):
                changes["quality_rating"] = "RED" if signal == "flagged" else "GREEN"
        if event.event.upper() == "THROUGHPUT_UPGRADE":
            changes["throughput_per_second"] = HIGH_THROUGHPUT
        for name, value in changes.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
        if changes:
            row.updated_at = now
            log.warning(
                "Meta changed a sender",
                extra={"sender_id": row.id, "event": event.event, "changes": str(changes)},
            )
        done.append(
            f"sender {row.id}: {row.status}"
            + (f" ({row.paused_reason})" if row.paused_reason else "")
        )
    if event.current_limit in TIERS:
        # Meta lowered or raised it: the new limit holds from the next claim on, for every
        # number of the business portfolio (the limit is the portfolio's).
        limit = TIERS[event.current_limit]
        portfolios = {s.portfolio for s in senders}
        if set_portfolio_limit(session, portfolios, limit, now):
            log.warning(
                "Meta changed a portfolio's messaging limit",
                extra={"event": event.event, "portfolios": str(sorted(portfolios)), "limit": limit},
            )
    session.flush()
    return f"{event.event} for {about}; " + "; ".join(done)
