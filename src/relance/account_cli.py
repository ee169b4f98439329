"""``relance user`` and ``relance apikey``: accounts and keys from the operator's shell.

Each change is in the audit log as done by ``cli`` (the system user and host named)."""

from __future__ import annotations

import getpass
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from relance.accounts.principal import Principal
from relance.accounts.roles import Role
from relance.cli_settings import settings_for
from relance.config import Settings
from relance.errors import DomainError

user_cli = typer.Typer(no_args_is_help=True, help="Manage the people who sign in.")
apikey_cli = typer.Typer(no_args_is_help=True, help="Manage API keys.")

RoleOption = Annotated[Role, typer.Option(case_sensitive=False, help="admin, operator or viewer")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"relance: {message}", err=True)
    return typer.Exit(code)


def _words(detail: object) -> str:
    if isinstance(detail, list):
        return "; ".join(f"{d.get('field')}: {d.get('msg')}" for d in detail if isinstance(d, dict))
    return str(detail)


@contextmanager
def unit_of_work(settings: Settings) -> Iterator[Session]:
    """The database, migrated, in one transaction; a refused change exits 1 with its reason.

    Warns when it creates an empty embedded database: run from another folder, the command
    would otherwise change a database that ``relance up`` does not use."""
    from relance.db import session_scope
    from relance.migrate import upgrade

    new = (
        settings.is_embedded
        and not Path(make_url(settings.effective_database_url).database or "").exists()
    )
    upgrade(settings)
    if new:
        typer.echo(
            f"relance: there was no database at {settings.data_dir_shown}: created an empty one. "
            "Run this where relance up runs, or set RELANCE_DATA_DIR.",
            err=True,
        )
    try:
        with session_scope(settings) as session:
            yield session
    except DomainError as exc:
        raise _fail(_words(exc.detail)) from None


def operator(session: Session) -> Principal:
    from relance.accounts.users import command_line_account

    account = command_line_account(session)
    where = f"{getpass.getuser()}@{socket.gethostname()}"
    return Principal(account.id, Role.ADMIN, "cli", f"command line ({where})")


def _read_password(generate: bool) -> str | None:
    """At a terminal, asked twice; else the first line of stdin; None: make one up."""
    if generate:
        return None
    if sys.stdin.isatty():
        password: str = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        return password
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        raise _fail("give the password on stdin, or --generate-password", 2)
    return line


@user_cli.command("create")
def user_create(
    email: Annotated[str, typer.Option(help="the address they sign in with")],
    role: RoleOption,
    name: Annotated[str, typer.Option(help="display name")] = "",
    generate_password: Annotated[
        bool, typer.Option(help="make one up and print it (else: prompt, or stdin)")
    ] = False,
) -> None:
    """Create a user; the first admin of a fresh install is made this way."""
    from relance.accounts import audit, users

    settings = settings_for("user create")
    password = _read_password(generate_password)
    with unit_of_work(settings) as session:
        user, made_up = users.create_user(session, email, password, role, name)
        audit.record(session, operator(session), "user.create", f"user:{user.id}", role=role)
    typer.echo(f"user {user.email} ({user.role}) created in {settings.database_shown}", err=True)
    if made_up:
        typer.echo("their password, shown once:", err=True)
        typer.echo(made_up)


@user_cli.command("password")
def user_password(
    email: Annotated[str, typer.Option(help="whose password")],
    generate_password: Annotated[bool, typer.Option(help="make one up and print it")] = False,
) -> None:
    """Set a user's password (a locked-out admin's way back); their sessions end."""
    from relance.accounts import audit, sessions, users

    settings = settings_for("user password")
    password = _read_password(generate_password)
    with unit_of_work(settings) as session:
        user = users.by_email(session, email)
        if user is None or user.email in users.SYSTEM_EMAILS:
            raise _fail(f"no user {email.strip().lower()}")
        made_up = users.reset_password(session, user, password)
        ended = sessions.close_all(session, user.id)
        who = operator(session)
        audit.record(session, who, "user.password_reset", f"user:{user.id}", ended=ended)
    typer.echo(f"password of {user.email} set; {ended} session(s) ended", err=True)
    if made_up:
        typer.echo(made_up)


@user_cli.command("list")
def user_list() -> None:
    """The users: id, email, role, and whether they are disabled."""
    from relance.accounts import users

    with unit_of_work(settings_for("user list")) as session:
        for user in users.list_users(session):
            state = "disabled" if user.disabled_at else "active"
            typer.echo(f"{user.id}\t{user.email}\t{user.role}\t{state}\t{user.display_name}")


@apikey_cli.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="a label for the key")] = "",
    user: Annotated[
        str | None, typer.Option(help="the owner's email (default: the command line's admin)")
    ] = None,
    role: Annotated[
        Role | None, typer.Option(case_sensitive=False, help="default: the owner's; never higher")
    ] = None,
) -> None:
    """Create an API key; the key is printed alone on the last line of stdout."""
    from relance.accounts import audit, keys, users

    settings = settings_for("apikey create")
    with unit_of_work(settings) as session:
        owner = users.by_email(session, user) if user else None
        if user and owner is None:
            raise _fail(f"no user {user.strip().lower()}: relance user create first")
        row, key = keys.issue_api_key(session, name, owner, role)
        audit.record(session, operator(session), "key.create", f"key:{row.id}", role=row.role)
        label = f"{row.role}, owned by {owner.email if owner else 'the command line'}"
    typer.echo(
        f"API key '{name or 'unnamed'}' ({label}) created in {settings.database_shown}; "
        "it is shown once:",
        err=True,
    )
    typer.echo(key)


@apikey_cli.command("list")
def apikey_list() -> None:
    """Every key: id, prefix, name, role, owner, created, last used, revoked."""
    from relance.accounts import keys

    with unit_of_work(settings_for("apikey list")) as session:
        for key, owner in keys.list_keys(session):
            used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
            revoked = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            created = key.created_at.isoformat(timespec="seconds")
            fields = [key.id, key.prefix, key.name, key.role, owner.email, created, used, revoked]
            typer.echo("\t".join(str(f) for f in fields))


@apikey_cli.command("revoke")
def apikey_revoke(
    ident: Annotated[str, typer.Argument(metavar="ID_OR_PREFIX", help="as apikey list shows")],
) -> None:
    """Revoke a key: it fails from the next request on."""
    from relance.accounts import audit, keys

    with unit_of_work(settings_for("apikey revoke")) as session:
        key = keys.get_key(session, ident)
        if key.revoked_at is None:
            keys.revoke(session, key)
            audit.record(session, operator(session), "key.revoke", f"key:{key.id}", name=key.name)
        typer.echo(f"API key {key.id} ({key.prefix}, '{key.name}') is revoked", err=True)
