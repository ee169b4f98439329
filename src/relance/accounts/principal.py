"""Who a request acts as: a signed-in user (a session) or an API key, with its role."""

from __future__ import annotations

from dataclasses import dataclass

from relance.accounts.roles import Permission, Role, can


@dataclass(frozen=True)
class Principal:
    user_id: int
    role: Role
    actor: str  # for the audit log: "user:3" or "key:7"
    label: str  # for people: "ada@example.com", "key 'ci' of ada@example.com"
    key_id: int | None = None
    session_hash: str | None = None

    def can(self, permission: Permission) -> bool:
        return can(self.role, permission)
