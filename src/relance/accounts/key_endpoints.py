"""HTTP routes of API keys (one's own; admins: everyone's) and of the audit log (admins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status

from relance.accounts import audit, keys, users
from relance.accounts.principal import Principal
from relance.accounts.roles import Permission, at_most, effective
from relance.accounts.schemas import AuditOut, AuditPage, KeyCreate, KeyCreated, KeyList, KeyOut
from relance.contacts.schemas import MAX_ID
from relance.deps import Address, AuditReader, DbSession, KeysOwner, current_principal
from relance.errors import Invalid, error_responses
from relance.models import ApiKey, User

router = APIRouter(prefix="/api", dependencies=[Depends(current_principal)])
KeyIdent = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]


def key_out(key: ApiKey, owner: User) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        role=effective(key.role, owner.role),
        user_id=owner.id,
        owner=owner.email,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def _may_touch(who: Principal, user_id: int) -> None:
    """One's own keys need own_keys; anyone else's need manage_keys."""
    if user_id != who.user_id and not who.can(Permission.MANAGE_KEYS):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"forbidden: another user's keys need the permission '{Permission.MANAGE_KEYS}', "
            f"which the role {who.role} has not",
        )


@router.get("/keys", tags=["keys"], summary="List API keys: one's own (admins: everyone's)")
def list_keys(session: DbSession, who: KeysOwner) -> KeyList:
    mine = None if who.can(Permission.MANAGE_KEYS) else who.user_id
    return KeyList(items=[key_out(k, u) for k, u in keys.list_keys(session, mine)])


@router.post(
    "/keys",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(403, 404, 422),
    tags=["keys"],
    summary="Create an API key; the answer holds the key, shown this once",
)
def create_key(data: KeyCreate, session: DbSession, who: KeysOwner, address: Address) -> KeyCreated:
    owner_id = data.user_id or who.user_id
    _may_touch(who, owner_id)
    owner = users.get_user(session, owner_id)
    # Never above the caller either: a viewer key of an admin must not mint an admin key.
    ceiling = effective(who.role, owner.role)
    role = data.role or ceiling
    if not at_most(role, ceiling):
        raise Invalid([{"field": "role", "msg": f"this key can be {ceiling} at most"}])
    key, secret = keys.issue_api_key(session, data.name, owner, role)
    audit.record(session, who, "key.create", f"key:{key.id}", address, owner=owner.email, role=role)
    return KeyCreated(**key_out(key, owner).model_dump(), key=secret)


@router.delete(
    "/keys/{ident}",
    responses=error_responses(403, 404, 409, 422),
    tags=["keys"],
    summary="Revoke an API key (by id or prefix): it fails from the next request on",
)
def revoke_key(ident: KeyIdent, session: DbSession, who: KeysOwner, address: Address) -> KeyOut:
    key = keys.get_key(session, ident)
    _may_touch(who, key.user_id)
    first = key.revoked_at is None
    keys.revoke(session, key)
    if first:
        audit.record(session, who, "key.revoke", f"key:{key.id}", address, name=key.name)
    return key_out(key, users.get_user(session, key.user_id))


@router.get(
    "/audit",
    responses=error_responses(422),
    tags=["audit"],
    summary="The audit log, newest first (admins)",
)
def audit_log(
    session: DbSession,
    _: AuditReader,
    actor: Annotated[str | None, Query(max_length=40, description="user:3, key:7")] = None,
    action: Annotated[str | None, Query(max_length=60, description="campaign.launch")] = None,
    target: Annotated[str | None, Query(max_length=200, description="campaign:12")] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditPage:
    rows, cursor = audit.events(
        session, actor=actor, action=action, target=target, before=before, limit=limit
    )
    items = [
        AuditOut(
            id=e.id,
            at=e.at,
            actor=e.actor,
            actor_label=e.actor_label,
            action=e.action,
            target=e.target,
            address=e.address,
            detail=e.detail or {},
        )
        for e in rows
    ]
    return AuditPage(items=items, next=cursor)
