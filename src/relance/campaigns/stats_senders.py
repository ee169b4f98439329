"""A campaign's senders in its stats: the share each number sent, and what holds each one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from relance.config import Settings
from relance.models import Message, Recipient, campaign_senders, utcnow
from relance.senders import service
from relance.senders.domain import limit_reason, messaging_room
from relance.senders.identity import SenderInfo
from relance.senders.limits import limit_of
from relance.senders.usage import members, window_sends


def _senders_of(session: Session, settings: Settings, campaign_id: int) -> list[SenderInfo]:
    infos = service.infos(session, settings)
    named = session.scalars(
        select(campaign_senders.c.sender_id)
        .where(campaign_senders.c.campaign_id == campaign_id)
        .order_by(campaign_senders.c.sender_id)
    ).all()
    if not named:
        return [s for s in infos.values() if s.is_default]
    return [infos[i] for i in named if i in infos]


def sender_shares(session: Session, settings: Settings, campaign_id: int) -> list[dict[str, Any]]:
    """Per number of the campaign: its recipients, and the messages it sent (both kinds)."""
    senders = _senders_of(session, settings, campaign_id)
    recipients = dict(
        session.execute(
            select(Recipient.sender_id, func.count())
            .where(Recipient.campaign_id == campaign_id)
            .group_by(Recipient.sender_id)
        ).all()
    )
    sent = dict(
        session.execute(
            select(Message.sender_id, func.count())
            .where(Message.campaign_id == campaign_id, Message.sent_at.is_not(None))
            .group_by(Message.sender_id)
        ).all()
    )
    return [
        {
            "sender_id": s.id,
            "name": s.name,
            "display_number": s.display_number,
            "status": s.status,
            "recipients": recipients.get(s.stored_id, 0),
            "messages_sent": sent.get(s.stored_id, 0),
        }
        for s in senders
    ]


def sender_waits(session: Session, settings: Settings, campaign_id: int) -> list[str]:
    """Why some of the campaign's numbers hold their messages: a pause, a stop, a slowdown,
    the messaging limit ("messaging limit N per 24 h reached, resumes at T")."""
    out = []
    now = utcnow()
    for sender in _senders_of(session, settings, campaign_id):
        name = f"sender {sender.name}"
        if sender.status in ("paused", "stopped", "slowed"):
            held = {"paused": "Message 1s paused", "stopped": "stopped", "slowed": "slowed"}
            why = f": {sender.paused_reason}" if sender.paused_reason else ""
            out.append(f"{name} {held[sender.status]}{why}")
        limit = limit_of(sender, settings)
        if limit:
            stored = members(session, sender.portfolio)
            opened = [at for _, at in window_sends(session, stored, now)]
            room = messaging_room(limit, opened, now)
            if room.resumes_at is not None:
                out.append(f"{name}: {limit_reason(limit, room.resumes_at)}")
    return out
