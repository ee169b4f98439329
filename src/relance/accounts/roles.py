"""Who may do what: roles, permissions and the one table between them. Pure.

The API and the dashboard ask this table, and nothing else: a route names the permission it
needs, a page hides what the signed-in role lacks, and a forbidden request is a 403 naming the
permission. An API key carries a role no higher than its owner's.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read"  # campaigns, contacts, stats, templates, the dashboard's pages
    EXPORT = "export"  # CSV exports of recipients and contacts
    MANAGE_CONTACTS = "manage_contacts"  # create, edit, import, delete contacts and categories
    MANAGE_CAMPAIGNS = "manage_campaigns"  # create, edit, delete drafts
    RUN_CAMPAIGNS = "run_campaigns"  # launch, pause, resume, cancel, retry
    MANAGE_SENDERS = "manage_senders"
    MANAGE_USERS = "manage_users"  # people, their roles, passwords and sessions
    MANAGE_KEYS = "manage_keys"  # every user's API keys (one's own: see own_keys)
    OWN_KEYS = "own_keys"  # create, list and revoke one's own API keys
    READ_AUDIT = "read_audit"


P = Permission
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({P.READ, P.EXPORT, P.OWN_KEYS}),
    Role.OPERATOR: frozenset(
        {P.READ, P.EXPORT, P.OWN_KEYS, P.MANAGE_CONTACTS, P.MANAGE_CAMPAIGNS, P.RUN_CAMPAIGNS}
    ),
    Role.ADMIN: frozenset(Permission),
}
RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


def can(role: Role | str, permission: Permission) -> bool:
    return permission in ROLE_PERMISSIONS[Role(role)]


def at_most(role: Role | str, ceiling: Role | str) -> bool:
    """Is ``role`` no higher than ``ceiling`` (a key's role against its owner's)?"""
    return RANK[Role(role)] <= RANK[Role(ceiling)]


def effective(key_role: Role | str, owner_role: Role | str) -> Role:
    """What a key may do: its own role, capped by its owner's role today (a demoted owner's
    keys lose what the owner lost)."""
    key, owner = Role(key_role), Role(owner_role)
    return key if RANK[key] <= RANK[owner] else owner
