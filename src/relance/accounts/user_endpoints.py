"""HTTP routes of people: who am I, and (admins) users, their roles, passwords and sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, status
from sqlalchemy.orm import Session

from relance.accounts import audit, passwords, sessions, users
from relance.accounts.roles import ROLE_PERMISSIONS
from relance.accounts.schemas import (
    MeOut,
    PasswordChange,
    PasswordOut,
    PasswordSet,
    SessionsEnded,
    UserCreate,
    UserCreated,
    UserList,
    UserOut,
    UserUpdate,
)
from relance.config import get_settings
from relance.contacts.schemas import MAX_ID
from relance.deps import Address, CurrentPrincipal, DbSession, UsersAdmin, current_principal
from relance.errors import Invalid, error_responses
from relance.models import User

router = APIRouter(prefix="/api", tags=["accounts"], dependencies=[Depends(current_principal)])
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


def user_out(user: User, open_sessions: int) -> UserOut:
    return UserOut(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=user.role,
        created_at=user.created_at,
        disabled_at=user.disabled_at,
        sessions=open_sessions,
    )


def _out(session: Session, user: User) -> UserOut:
    counts = sessions.open_counts(session, get_settings())
    return user_out(user, counts.get(user.id, 0))


@router.get("/me", summary="Who this request acts as, and what it may do")
def me(session: DbSession, who: CurrentPrincipal) -> MeOut:
    user = users.get_user(session, who.user_id)
    return MeOut(
        user_id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=who.role,
        permissions=sorted(ROLE_PERMISSIONS[who.role]),
        via="key" if who.key_id is not None else "session",
        key_id=who.key_id,
    )


@router.post(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(422),
    summary="Change one's own password (the other sessions end)",
)
def change_own_password(
    data: PasswordChange, session: DbSession, who: CurrentPrincipal, address: Address
) -> None:
    user = users.get_user(session, who.user_id)
    if not passwords.verify(user.password_hash, data.current_password):
        raise Invalid([{"field": "current_password", "msg": "does not match"}])
    users.reset_password(session, user, data.new_password)
    others = sessions.close_all(session, user.id, keep=who.session_hash)
    audit.record(session, who, "user.password_change", f"user:{user.id}", address, ended=others)


@router.get("/users", summary="List users (admins)")
def list_users(session: DbSession, _: UsersAdmin) -> UserList:
    counts = sessions.open_counts(session, get_settings())
    return UserList(items=[user_out(u, counts.get(u.id, 0)) for u in users.list_users(session)])


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
    summary="Create a user (admins); without a password, one is made up and shown once",
)
def create_user(
    data: UserCreate, session: DbSession, who: UsersAdmin, address: Address
) -> UserCreated:
    user, made_up = users.create_user(
        session, data.email, data.password, data.role, data.display_name
    )
    audit.record(session, who, "user.create", f"user:{user.id}", address, role=user.role)
    return UserCreated(**user_out(user, 0).model_dump(), password=made_up)


@router.get("/users/{user_id}", responses=error_responses(404, 422), summary="Get a user")
def get_user(user_id: UserId, session: DbSession, _: UsersAdmin) -> UserOut:
    return _out(session, users.get_user(session, user_id))


@router.patch(
    "/users/{user_id}",
    responses=error_responses(404, 409, 422),
    summary="Change a user's name or role, disable or enable them (admins)",
)
def update_user(
    user_id: UserId, data: UserUpdate, session: DbSession, who: UsersAdmin, address: Address
) -> UserOut:
    user = users.get_user(session, user_id)
    changed = users.update_user(session, user, data.display_name, data.role, data.disabled)
    ended = sessions.close_all(session, user.id) if data.disabled else 0
    if changed:
        audit.record(
            session,
            who,
            "user.update",
            f"user:{user.id}",
            address,
            fields=changed,
            role=user.role,
            disabled=user.disabled_at is not None,
            ended=ended,
        )
    return _out(session, user)


@router.post(
    "/users/{user_id}/password",
    responses=error_responses(404, 422),
    summary="Reset a user's password (admins); their sessions end",
)
def reset_password(
    user_id: UserId, data: PasswordSet, session: DbSession, who: UsersAdmin, address: Address
) -> PasswordOut:
    user = users.get_user(session, user_id)
    made_up = users.reset_password(session, user, data.password)
    ended = sessions.close_all(session, user.id)
    audit.record(session, who, "user.password_reset", f"user:{user.id}", address, ended=ended)
    return PasswordOut(password=made_up, sessions_ended=ended)


@router.delete(
    "/users/{user_id}/sessions",
    responses=error_responses(404, 422),
    summary="End every session of a user (admins): each browser must sign in again",
)
def end_sessions(
    user_id: UserId, session: DbSession, who: UsersAdmin, address: Address
) -> SessionsEnded:
    user = users.get_user(session, user_id)
    ended = sessions.close_all(session, user.id)
    audit.record(session, who, "user.sessions_end", f"user:{user.id}", address, ended=ended)
    return SessionsEnded(sessions_ended=ended)
