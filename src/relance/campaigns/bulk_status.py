"""Status reports applied set-based: one UPDATE for a whole batch's forward moves.

A webhook batch (a POST of 100 statuses, or an inbox batch of hundreds of single-status
webhooks) mostly carries ``delivered`` and ``read`` for messages already ``sent``. Applying
them one compare-and-set each cost a round trip per event. Here the domain's rule
(``next_message_status``: never backwards, a duplicate changes nothing) is folded per message
over its reports in arrival order, in Python; then one UPDATE moves every message whose status
is still what was read (the compare-and-set, in SQL), and the counters are recorded once per
campaign. What this path does not take (a report about a message still ``sending``, a
``failed``, a message whose compare-and-set lost) goes through ``outcomes.apply_status``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from relance.campaigns import counters
from relance.campaigns.domain import (
    Applied,
    MessageKind,
    MessageStatus,
    Outcome,
    next_message_status,
)
from relance.db import among, is_postgresql
from relance.models import Message
from relance.providers.events import StatusEvent

MS = MessageStatus


@dataclass
class _Plan:
    message: Message
    expected: MessageStatus
    status: MessageStatus
    delivered_at: datetime | None
    read_at: datetime | None
    counted: list[str]
    outcomes: list[tuple[str, Applied]]


def _eligible(message: Message | None, reports: Sequence[tuple[StatusEvent, datetime]]) -> bool:
    return (
        message is not None
        and message.status != MS.SENDING
        and all(event.status != "failed" for event, _ in reports)
    )


def _plan(message: Message, reports: Sequence[tuple[StatusEvent, datetime]]) -> _Plan:
    """The domain's rule folded over one message's reports, in arrival order."""
    current = MS(message.status)
    plan = _Plan(message, current, current, message.delivered_at, message.read_at, [], [])
    for event, at in reports:
        reported = MS(event.status)
        target = next_message_status(plan.status, reported)
        if target is None:
            detail = f"{reported.value} after {plan.status.value}"
            plan.outcomes.append(
                (event.dedup_key, Applied(Outcome.IGNORED, message.recipient_id, detail))
            )
            continue
        # A read implies delivered, even when the delivered receipt is late or lost.
        if target in (MS.DELIVERED, MS.READ) and plan.delivered_at is None:
            plan.delivered_at = at
            plan.counted.append("delivered")
        if target == MS.READ and plan.read_at is None:
            plan.read_at = at
            plan.counted.append("read")
        plan.status = target
        plan.outcomes.append(
            (event.dedup_key, Applied(Outcome(target.value), message.recipient_id))
        )
    return plan


def apply_forward(
    session: Session, reports: Sequence[tuple[StatusEvent, datetime, Message | None]]
) -> dict[str, Applied]:
    """Apply what this path can of ``reports`` (new events, arrival order); their outcomes by
    dedup key. The events left out are for the caller to apply one by one."""
    by_message: dict[int, list[tuple[StatusEvent, datetime]]] = defaultdict(list)
    messages: dict[int, Message] = {}
    for event, at, message in reports:
        if message is not None:
            by_message[message.id].append((event, at))
            messages[message.id] = message
    plans = [
        _plan(messages[mid], seq)
        for mid, seq in by_message.items()
        if _eligible(messages[mid], seq)
    ]
    moving = {p.message.id: p for p in plans if p.status != p.expected}
    won = _move(session, list(moving.values())) if moving else set()
    out: dict[str, Applied] = {}
    for plan in plans:
        if plan.message.id in moving and plan.message.id not in won:
            continue  # another transaction moved it first: the caller re-reads and decides
        out.update(plan.outcomes)
    _count(session, [moving[mid] for mid in sorted(won)])
    return out


# PostgreSQL: the batch as arrays, one statement whatever its size (compiled once, sent as five
# parameters); the CASE form below compiles three CASEs of one branch per message each time.
_MOVE_PG = text(
    """
    UPDATE messages AS m
    SET status = v.status,
        delivered_at = COALESCE(v.delivered_at, m.delivered_at),
        read_at = COALESCE(v.read_at, m.read_at)
    FROM unnest(
        CAST(:ids AS INTEGER[]), CAST(:expected AS TEXT[]), CAST(:statuses AS TEXT[]),
        CAST(:delivered AS TIMESTAMPTZ[]), CAST(:read AS TIMESTAMPTZ[])
    ) AS v(id, expected, status, delivered_at, read_at)
    WHERE m.id = v.id AND m.status = v.expected
    RETURNING m.id
    """
)


def _move(session: Session, plans: list[_Plan]) -> set[int]:
    """One compare-and-set UPDATE for every message of the batch; the ids that moved."""
    if is_postgresql(session):
        won = set(
            session.scalars(
                _MOVE_PG,
                {
                    "ids": [p.message.id for p in plans],
                    "expected": [p.expected.value for p in plans],
                    "statuses": [p.status.value for p in plans],
                    "delivered": [p.delivered_at for p in plans],
                    "read": [p.read_at for p in plans],
                },
            )
        )
    else:
        won = _move_by_case(session, plans)
    for plan in plans:
        if plan.message.id in won:  # keep the session's copy current for later events
            set_committed_value(plan.message, "status", plan.status.value)
            set_committed_value(plan.message, "delivered_at", plan.delivered_at)
            set_committed_value(plan.message, "read_at", plan.read_at)
    return won


def _move_by_case(session: Session, plans: list[_Plan]) -> set[int]:
    ids = [p.message.id for p in plans]
    values: dict[str, Any] = {
        "status": case({p.message.id: p.status.value for p in plans}, value=Message.id)
    }
    for name, column in (("delivered_at", Message.delivered_at), ("read_at", Message.read_at)):
        stamps = {p.message.id: getattr(p, name) for p in plans if getattr(p, name) is not None}
        if stamps:
            values[name] = case(stamps, value=Message.id, else_=column)
    expected = case({p.message.id: p.expected.value for p in plans}, value=Message.id)
    rows = session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.status == expected)
        .values(values)
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    )
    return set(rows.scalars())


def _count(session: Session, plans: list[_Plan]) -> None:
    """``delivered`` and ``read`` count contacts: a Message 1 sent again by retry-failed counts
    only if no other Message 1 of the contact was delivered (read) already."""
    first_ones = [p for p in plans if p.message.kind == MessageKind.MESSAGE_1 and p.counted]
    if not first_ones:
        return
    ids = [p.message.id for p in first_ones]
    recipients = [p.message.recipient_id for p in first_ones]
    earlier: dict[str, set[int]] = {}
    for name, stamp in (("delivered", Message.delivered_at), ("read", Message.read_at)):
        earlier[name] = set(
            session.scalars(
                select(Message.recipient_id).where(
                    among(session, Message.recipient_id, recipients),
                    Message.kind == MessageKind.MESSAGE_1.value,
                    ~among(session, Message.id, ids),
                    stamp.is_not(None),
                )
            )
        )
    changes: Counter[tuple[int, str]] = Counter()
    latest: dict[int, datetime] = {}
    for plan in first_ones:
        for name in plan.counted:
            if plan.message.recipient_id not in earlier[name]:
                changes[(plan.message.campaign_id, name)] += 1
        stamp_at = plan.read_at or plan.delivered_at
        if stamp_at is not None:
            cid = plan.message.campaign_id
            latest[cid] = max(stamp_at, latest.get(cid, stamp_at))
    for (campaign_id, name), n in sorted(changes.items()):
        counters.record(session, campaign_id, name, latest[campaign_id], n)
