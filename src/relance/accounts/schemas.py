"""What the accounts API reads and answers: users, API keys, the signed-in principal, audit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relance.accounts.roles import Role
from relance.contacts.schemas import MAX_ID


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MeOut(BaseModel):
    user_id: int
    email: str
    display_name: str
    role: Role
    permissions: list[str]
    via: Literal["session", "key"]
    key_id: int | None = None


class UserCreate(Strict):
    email: str = Field(min_length=3, max_length=320)
    display_name: str = Field(default="", max_length=200)
    role: Role
    password: str | None = Field(
        default=None, max_length=1000, description="omit it and relance makes one up (shown once)"
    )


class UserUpdate(Strict):
    display_name: str | None = Field(default=None, max_length=200)
    role: Role | None = None
    disabled: bool | None = Field(
        default=None, description="true ends the user's sessions and stops their keys at once"
    )


class PasswordSet(Strict):
    password: str | None = Field(
        default=None, max_length=1000, description="omit it and relance makes one up (shown once)"
    )


class PasswordChange(Strict):
    current_password: str = Field(max_length=1000)
    new_password: str = Field(max_length=1000)


class UserOut(BaseModel):
    id: int
    email: str
    display_name: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None
    sessions: int = Field(description="sessions open now")


class UserCreated(UserOut):
    password: str | None = Field(description="the made-up password, shown this once; else null")


class UserList(BaseModel):
    items: list[UserOut]


class PasswordOut(BaseModel):
    password: str | None = Field(description="the made-up password, shown this once; else null")
    sessions_ended: int


class SessionsEnded(BaseModel):
    sessions_ended: int


class KeyCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Role | None = Field(default=None, description="default: the owner's; never higher")
    user_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="another user's key (admins only)"
    )


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    role: Role
    user_id: int
    owner: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="the key itself: shown this once, never again")


class KeyList(BaseModel):
    items: list[KeyOut]


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    actor_label: str
    action: str
    target: str
    address: str
    detail: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditOut]
    next: int | None = Field(description="pass it as `before` for the next, older page")
