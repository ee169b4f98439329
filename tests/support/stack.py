"""relance as its user runs it, for end-to-end tests: the ``relance`` command, unpaced settings."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

# No pacing at all: tests measure the engine, never the anti-ban pace (unless they set it).
UNPACED = {
    "SEND_DELAY_SECONDS": "0",
    "BATCH_PAUSE_SECONDS": "0",
    "MAX_SENDS_PER_SECOND": "0",
    "DAILY_QUOTA": "0",
}


def relance_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "relance", *args]


def run_relance(
    *args: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    inherit_env: bool = True,
    timeout: float = 120,
    stdin: str | None = None,
) -> str:
    """Run ``relance <args>`` to its end, ``env`` added to ours (alone: ``inherit_env=False``);
    returns its stdout, or fails the test with its stderr."""
    done = subprocess.run(
        relance_command(*args),
        env={**os.environ, **env} if inherit_env else dict(env),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def cli_user(env: Mapping[str, str], email: str, role: str, password: str) -> None:
    """A user made by ``relance user create``, the password given on stdin."""
    run_relance("user", "create", "--email", email, "--role", role, env=env, stdin=password + "\n")


def cli_api_key(
    env: Mapping[str, str], cwd: Path | None = None, inherit_env: bool = True, name: str = "e2e"
) -> str:
    """A key made by ``relance apikey create`` (which migrates the database first)."""
    out = run_relance("apikey", "create", "--name", name, env=env, cwd=cwd, inherit_env=inherit_env)
    return out.strip().splitlines()[-1]
