"""Senders' use cases: the default one from the environment, create, edit, delete, look up.

Services flush, never commit: the entrypoint (a route, a CLI command) owns the transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from relance.config import Settings
from relance.db import conflict_insert
from relance.errors import Conflict, Invalid, found
from relance.models import Sender, campaign_senders, utcnow
from relance.senders.identity import (
    DEFAULT_NAME,
    REF_FIELDS,
    SenderInfo,
    default_sender_values,
    env_ref,
    info,
)
from relance.senders.schemas import SenderCreate, SenderUpdate


def ensure_default(session: Session, settings: Settings) -> Sender:
    """The default sender's row, created on first use (the migration makes it too; tests
    empty the tables), its shown identifiers kept in step with the environment."""
    row = session.scalar(select(Sender).where(Sender.is_default.is_(True)))
    if row is None:
        # Two first uses at once: one insert wins, the other finds its row.
        session.execute(
            conflict_insert(session, Sender)
            .values(**default_sender_values(settings))
            .on_conflict_do_nothing()
        )
        row = session.scalars(select(Sender).where(Sender.is_default.is_(True))).one()
    column = REF_FIELDS.get(settings.provider)
    shown = env_ref(settings) or None
    if row.provider != settings.provider or (column and getattr(row, column) != shown):
        row.provider = settings.provider
        for name in REF_FIELDS.values():
            setattr(row, name, shown if name == column else None)
        session.flush()
    return row


def list_senders(session: Session, settings: Settings) -> list[Sender]:
    ensure_default(session, settings)
    return list(session.scalars(select(Sender).order_by(Sender.id)))


def get_sender(session: Session, sender_id: int) -> Sender:
    return found(session.get(Sender, sender_id), "sender", sender_id)


def infos(session: Session, settings: Settings) -> dict[int, SenderInfo]:
    """Every sender as a value, by id, in one query (the dispatcher asks often; the default
    sender's identifiers come from the environment whatever its row shows)."""
    rows = list(session.scalars(select(Sender).order_by(Sender.id)))
    if not any(r.is_default for r in rows):
        rows = list_senders(session, settings)
    return {row.id: info(row, settings) for row in rows}


def default_info(session: Session, settings: Settings) -> SenderInfo:
    return info(ensure_default(session, settings), settings)


def by_ref(session: Session, settings: Settings, ref: str) -> SenderInfo | None:
    """The sender a webhook names (Meta's ``metadata.phone_number_id``, Twilio's ``To``)."""
    if not ref:
        return None
    column = REF_FIELDS.get(settings.provider)
    if column is None:
        return None
    wanted = _digits(ref) if settings.provider == "twilio" else ref
    for one in infos(session, settings).values():
        mine = _digits(one.ref) if settings.provider == "twilio" else one.ref
        if one.provider == settings.provider and mine and mine == wanted:
            return one
    return None


def by_display_number(session: Session, settings: Settings, number: str) -> list[SenderInfo]:
    """The senders a quality or account webhook names by display number; with no number (an
    account-wide event), every sender of the provider. A lone sender is the one meant even
    when its display number was never filled in."""
    mine = settings.provider  # the webhook came from it (the simulator speaks Meta's format)
    rows = [r for r in list_senders(session, settings) if info(r, settings).provider == mine]
    if not number:
        return [info(r, settings) for r in rows]
    matched = [r for r in rows if r.display_number and _digits(r.display_number) == _digits(number)]
    if not matched and len(rows) == 1:
        matched = rows
    return [info(r, settings) for r in matched]


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


def _check_identity(
    session: Session, settings: Settings, provider: str, values: dict[str, Any], own_id: int = 0
) -> None:
    if provider != settings.provider:
        # Webhooks come in for RELANCE_PROVIDER only: another provider's replies would be lost.
        raise Invalid(
            [
                {
                    "field": "provider",
                    "msg": f"this install receives webhooks from RELANCE_PROVIDER="
                    f"{settings.provider} only: a {provider} sender would lose its replies",
                }
            ]
        )
    column = REF_FIELDS.get(provider)
    for name in REF_FIELDS.values():
        if name != column and values.get(name):
            raise Invalid([{"field": name, "msg": f"{name} is not an identifier of {provider}"}])
    if column is None:
        return
    ref = values.get(column)
    if not ref:
        raise Invalid([{"field": column, "msg": f"a {provider} sender needs its {column}"}])
    if ref == env_ref(settings):
        raise Conflict(f"{column} {ref} is the default sender's (the environment's)")
    clash = session.scalar(
        select(Sender.id).where(getattr(Sender, column) == ref, Sender.id != own_id)
    )
    if clash is not None:
        raise Conflict(f"sender {clash} already has the {column} {ref}")


def _check_name(session: Session, name: str, own_id: int = 0) -> None:
    if not name:
        raise Invalid([{"field": "name", "msg": "a sender needs a name"}])
    if name.strip().lower() == DEFAULT_NAME:
        raise Invalid([{"field": "name", "msg": "'default' is the environment's sender"}])
    clash = session.scalar(select(Sender.id).where(Sender.name == name, Sender.id != own_id))
    if clash is not None:
        raise Conflict(f"sender {clash} is already named {name!r}")


def create_sender(session: Session, settings: Settings, data: SenderCreate) -> Sender:
    ensure_default(session, settings)
    values = data.model_dump()
    values["name"] = values["name"].strip()
    _check_name(session, values["name"])
    _check_identity(session, settings, data.provider, values)
    row = Sender(**values, quality_rating="UNKNOWN", status="active", is_default=False)
    session.add(row)
    session.flush()
    return row


def update_sender(session: Session, row: Sender, data: SenderUpdate) -> dict[str, Any]:
    """Apply a PATCH; answer what changed (for the audit log)."""
    changes = data.model_dump(exclude_unset=True, exclude={"clear", "status"}, exclude_none=True)
    if "name" in changes:
        if row.is_default:
            raise Invalid([{"field": "name", "msg": "the default sender keeps its name"}])
        changes["name"] = (changes["name"] or "").strip()
        _check_name(session, changes["name"], row.id)
    for cleared in data.clear:
        changes[cleared] = None
    if data.status is not None and data.status != row.status:
        changes["status"] = data.status
        changes["paused_reason"] = "paused by a person" if data.status == "paused" else None
    for name, value in changes.items():
        setattr(row, name, value)
    session.flush()
    return changes


def delete_sender(session: Session, row: Sender) -> None:
    """Only a sender no campaign names: its recipients' Message 2s must leave from it."""
    if row.is_default:
        raise Conflict("the default sender is the environment's: it cannot be deleted")
    used = session.scalar(
        select(campaign_senders.c.campaign_id).where(campaign_senders.c.sender_id == row.id)
    )
    if used is not None:
        raise Conflict(f"sender {row.id} serves campaign {used}: it cannot be deleted")
    session.delete(row)
    session.flush()


def set_portfolio_limit(
    session: Session, portfolios: set[str], limit: int | None, now: datetime
) -> int:
    """Meta's messaging limit is its business portfolio's: what Meta says of one number holds
    for every sender of that portfolio. Answers how many senders changed."""
    result = session.execute(
        update(Sender)
        .where(
            func.coalesce(Sender.portfolio, "").in_(sorted(portfolios)),
            Sender.messaging_limit.is_distinct_from(limit),
        )
        .values(messaging_limit=limit, updated_at=now)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def set_state(
    session: Session, sender_id: int, status: str, reason: str | None, **fields: Any
) -> bool:
    """Compare-and-set a sender's status (a webhook twice changes nothing the second time)."""
    result = session.execute(
        update(Sender)
        .where(Sender.id == sender_id)
        .values(status=status, paused_reason=reason, updated_at=utcnow(), **fields)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
