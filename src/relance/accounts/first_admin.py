"""A fresh install's first admin: asked for by ``relance up`` at a terminal, else a hint."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.orm import Session

from relance.accounts import users
from relance.accounts.roles import Role
from relance.errors import DomainError

HINT = (
    "nobody can sign in to the dashboard yet: create the first admin with\n"
    "  relance user create --email you@example.com --role admin"
)


def ask_first_admin(
    session: Session,
    ask: Callable[[str], str],
    ask_secret: Callable[[str], str],
    say: Callable[[str], None],
    tries: int = 3,
) -> str | None:
    """When nobody can sign in, ask for the first admin's email and password; their email, or
    None (somebody can sign in already, or the person gave up: an empty email or ``tries``
    refusals)."""
    if users.can_sign_in_count(session):
        return None
    say("Nobody can sign in yet: create the first admin (an empty email skips this).")
    for _ in range(tries):
        email = ask("  email: ").strip()
        if not email:
            break
        password = ask_secret("  password (10 characters or more): ")
        if password != ask_secret("  the same password again: "):
            say("  the two passwords differ")
            continue
        try:
            user, _made_up = users.create_user(session, email, password, Role.ADMIN)
        except DomainError as exc:
            say(f"  refused: {_words(exc.detail)}")
            continue
        say(f"  {user.email} is an admin: sign in with this email and password")
        return user.email
    say(HINT)
    return None


def _words(detail: object) -> str:
    if isinstance(detail, list):
        return "; ".join(f"{d.get('field')}: {d.get('msg')}" for d in detail if isinstance(d, dict))
    return str(detail)
