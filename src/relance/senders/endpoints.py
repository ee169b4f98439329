"""HTTP routes of senders: everyone reads them, admins change them (audited)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status

from relance.accounts import audit
from relance.contacts.schemas import MAX_ID
from relance.deps import Address, DbSession, Reader, SendersAdmin, SettingsDep, current_principal
from relance.errors import error_responses
from relance.models import Sender
from relance.senders import service, usage
from relance.senders.schemas import SenderCreate, SenderList, SenderOut, SenderUpdate

router = APIRouter(
    prefix="/api/senders", tags=["senders"], dependencies=[Depends(current_principal)]
)
SenderId = Annotated[int, Path(ge=1, le=MAX_ID)]


def sender_out(row: Sender, limit_used: int | None = None) -> SenderOut:
    return SenderOut.model_validate(
        {**{c.key: getattr(row, c.key) for c in Sender.__table__.columns}, "limit_used": limit_used}
    )


@router.get("", summary="List the senders (numbers) with their limits and health")
def list_senders(session: DbSession, settings: SettingsDep, _: Reader) -> SenderList:
    rows = service.list_senders(session, settings)
    used = usage.limit_used(session)
    items = [sender_out(r, used.get(r.id, 0)) for r in rows]
    return SenderList(items=items, total=len(items))


@router.get("/{sender_id}", responses=error_responses(404, 422), summary="One sender")
def get_sender(sender_id: SenderId, session: DbSession, _: Reader) -> SenderOut:
    row = service.get_sender(session, sender_id)
    used = usage.limit_used(session)
    return sender_out(row, used.get(row.id, 0))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(403, 409, 422),
    summary="Add a sender; its secrets stay in the environment",
)
def create_sender(
    data: SenderCreate,
    session: DbSession,
    settings: SettingsDep,
    who: SendersAdmin,
    address: Address,
) -> SenderOut:
    row = service.create_sender(session, settings, data)
    audit.record(session, who, "sender.create", f"sender:{row.id}", address, name=row.name)
    return sender_out(row, 0)


@router.patch(
    "/{sender_id}",
    responses=error_responses(403, 404, 409, 422),
    summary="Change a sender's name, limits, or pause and resume its Message 1s",
)
def update_sender(
    sender_id: SenderId, data: SenderUpdate, session: DbSession, who: SendersAdmin, address: Address
) -> SenderOut:
    row = service.get_sender(session, sender_id)
    changes = service.update_sender(session, row, data)
    if changes:
        audit.record(session, who, "sender.update", f"sender:{row.id}", address, **changes)
    return sender_out(row)


@router.delete(
    "/{sender_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(403, 404, 409, 422),
    summary="Delete a sender that no campaign names",
)
def delete_sender(
    sender_id: SenderId, session: DbSession, who: SendersAdmin, address: Address
) -> None:
    row = service.get_sender(session, sender_id)
    name = row.name
    service.delete_sender(session, row)
    audit.record(session, who, "sender.delete", f"sender:{sender_id}", address, name=name)
