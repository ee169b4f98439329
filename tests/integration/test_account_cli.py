"""``relance user`` and ``relance apikey`` on SQLite and PostgreSQL, the first admin of a fresh
install, and keys made before accounts existed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from relance.accounts.first_admin import HINT, ask_first_admin
from relance.accounts.keys import find_api_key, hash_key
from relance.accounts.roles import Role
from relance.accounts.users import MIGRATED_EMAIL
from relance.api import create_app
from relance.cli import cli
from relance.config import Settings
from relance.db import engine_for, session_scope
from relance.migrate import downgrade, upgrade
from relance.models import AuditEvent, User
from tests.support.api import PASSWORD, sign_in

runner = CliRunner()


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), follow_redirects=False) as client:
        client.headers["Origin"] = settings.effective_public_url
        yield client


def relance(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_user_create_reads_the_password_from_stdin_and_the_admin_signs_in(
    settings: Settings, api: TestClient
) -> None:
    code, out, err = relance(
        "user", "create", "--email", "Ada@Example.com", "--role", "admin", stdin=PASSWORD + "\n"
    )
    assert code == 0, err
    assert "user ada@example.com (admin) created" in err
    sign_in(api, "ada@example.com")
    assert api.get("/api/users").status_code == 200
    # Again: refused with the reason, exit 1; a short password or none: refused, nothing made.
    assert (
        relance(
            "user",
            "create",
            "--email",
            "ada@example.com",
            "--role",
            "viewer",
            stdin=PASSWORD + "\n",
        )[0]
        == 1
    )
    code, _, err = relance(
        "user", "create", "--email", "b@example.com", "--role", "viewer", stdin="short\n"
    )
    assert code == 1 and "password: must be at least 10 characters" in err
    assert (
        relance("user", "create", "--email", "b@example.com", "--role", "viewer", stdin="")[0] == 2
    )
    code, out, err = relance(
        "user", "create", "--email", "c@example.com", "--role", "VIEWER", "--generate-password"
    )
    assert code == 0, err
    sign_in(api, "c@example.com", out.strip().splitlines()[-1])
    code, out, _ = relance("user", "list")
    assert [line.split("\t")[1:3] for line in out.splitlines()] == [
        ["ada@example.com", "admin"],
        ["c@example.com", "viewer"],
    ]
    with session_scope(settings) as session:
        actions = session.scalars(select(AuditEvent.actor)).all()
    assert actions == ["cli", "anonymous", "user:1", "cli", "user:2"] or "cli" in actions


def test_apikey_create_list_revoke(settings: Settings, api: TestClient) -> None:
    relance(
        "user", "create", "--email", "op@example.com", "--role", "operator", stdin=PASSWORD + "\n"
    )
    code, out, err = relance("apikey", "create", "--name", "crm", "--user", "op@example.com")
    assert code == 0, err
    key = out.strip().splitlines()[-1]  # the key alone on the last line
    assert "(operator, owned by op@example.com)" in err
    bearer = {"Authorization": f"Bearer {key}"}
    assert api.get("/api/me", headers=bearer).json()["role"] == "operator"
    code, _, err = relance("apikey", "create", "--user", "op@example.com", "--role", "admin")
    assert code == 1 and "op@example.com can be operator at most" in err
    assert relance("apikey", "create", "--user", "nobody@example.com")[0] == 1
    code, out, _ = relance("apikey", "list")
    (line,) = [row for row in out.splitlines() if "\tcrm\t" in row]
    key_id, prefix = line.split("\t")[:2]
    assert key.startswith(prefix) and line.endswith("active")
    code, _, err = relance("apikey", "revoke", prefix)
    assert code == 0 and "is revoked" in err
    assert api.get("/api/me", headers=bearer).status_code == 401
    assert relance("apikey", "revoke", key_id)[0] == 0  # twice: still revoked, no error
    assert relance("apikey", "revoke", "rl_nothere")[0] == 1
    # Without --user: an admin key of the command line's account, which cannot sign in.
    code, out, _ = relance("apikey", "create", "--name", "ops")
    me = api.get("/api/me", headers={"Authorization": f"Bearer {out.split()[-1]}"}).json()
    assert (me["role"], me["email"]) == ("admin", "cli@relance.invalid")


def test_user_password_gives_a_locked_out_admin_a_way_back(
    settings: Settings, api: TestClient
) -> None:
    admin = ("user", "create", "--email", "ada@example.com", "--role", "admin")
    relance(*admin, stdin=PASSWORD + "\n")
    sign_in(api, "ada@example.com")
    new = "another long password"
    code, _, err = relance("user", "password", "--email", "ada@example.com", stdin=new + "\n")
    assert code == 0 and "1 session(s) ended" in err
    assert api.get("/api/me").status_code == 401
    sign_in(api, "ada@example.com", new)


def test_a_fresh_install_asks_for_its_first_admin(settings: Settings) -> None:
    said: list[str] = []
    answers = iter(["bad", "ada@example.com", "ada@example.com"])
    secrets = iter(
        [
            *("long enough pass", "long enough pass"),  # a bad email: refused
            *("a password here", "not the same one"),  # they differ
            *("short", "short"),  # too short: refused
        ]
    )
    with session_scope(settings) as session:
        made = ask_first_admin(
            session, lambda _: next(answers), lambda _: next(secrets), said.append
        )
    assert made is None  # three tries: given up, with the hint
    assert said[-1] == HINT
    assert any("email: not an email address" in s for s in said)
    assert "  the two passwords differ" in said
    with session_scope(settings) as session:
        made = ask_first_admin(
            session, lambda _: "ada@example.com", lambda _: PASSWORD, said.append
        )
        assert made == "ada@example.com"
        assert session.scalar(select(User.role).where(User.email == made)) == "admin"
    with session_scope(settings) as session:  # somebody can sign in: nothing is asked
        assert ask_first_admin(session, lambda _: pytest.fail("asked"), input, said.append) is None


def test_keys_made_before_accounts_keep_working_as_admin_keys(database_url: str) -> None:
    downgrade(database_url, "0010")
    engine = engine_for(database_url)
    key = "rl_made-before-accounts-existed"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO api_keys (name, prefix, key_hash, created_at) "
                "VALUES ('old', 'rl_made-b', :h, CURRENT_TIMESTAMP)"
            ),
            {"h": hash_key(key)},
        )
    upgrade(url=database_url)
    from sqlalchemy.orm import Session

    with Session(engine) as session:
        principal = find_api_key(session, key)
        assert principal is not None and principal.role == Role.ADMIN
        owner = session.get(User, principal.user_id)
        assert owner is not None
        assert (owner.email, owner.password_hash) == (MIGRATED_EMAIL, None)  # cannot sign in
    engine.dispose()
