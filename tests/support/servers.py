"""Servers a fault test owns: its own PostgreSQL cluster and its own Redis, on free ports, that it
may restart mid-campaign without touching the machine's shared servers.

PostgreSQL comes from the machine's binaries (``/usr/lib/postgresql/*/bin``): ``initdb`` in a
fresh directory, ``pg_ctl`` to start, restart (``-m fast``: sessions are cut, as an operator's
restart does) and stop. ``initdb`` refuses to run as root: as root, the cluster belongs to the
``postgres`` account and its commands run as it (``runuser``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from relance.processes import Process, Processes, free_port, port_open, wait_until


def postgres_bin() -> Path | None:
    """The newest PostgreSQL binaries on this machine, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def require(what: str, present: bool) -> None:
    """A missing server binary: a failure with CI set, a skip elsewhere (tests/conftest.py)."""
    if present:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not installed (CI is set: a missing server is a failure)")
    pytest.skip(f"{what} is not installed")


class OwnPostgres:
    """A PostgreSQL cluster of the test's own, on 127.0.0.1:``port``, database ``relance``."""

    def __init__(self) -> None:
        bin_dir = postgres_bin()
        require("PostgreSQL (initdb, pg_ctl)", bin_dir is not None)
        assert bin_dir is not None
        self.bin = bin_dir
        self.port = free_port()
        # Not under pytest's tmp_path: as root, the postgres account must reach the directory.
        self.root = Path(tempfile.mkdtemp(prefix="relance-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/relance"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{tool} {args}: {done.stdout}{done.stderr}"

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            # Speed, not safety: this cluster lives for one test (a crash of the machine is
            # not among its faults). A fast restart still checkpoints cleanly.
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options, *extra,
        )  # fmt: skip

    def start(self) -> OwnPostgres:
        self._pg_ctl("start")
        subprocess.run(
            [*self._as, str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "relance"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return self

    def restart(self) -> None:
        """A fast restart: every session is cut, the cluster comes back on the same port."""
        self._pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(AssertionError, OSError, subprocess.SubprocessError):
            self._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class OwnRedis:
    """A redis-server of the test's own, without persistence: a restart empties it (queued
    tasks, unacknowledged ones and the pacing state are gone), the harshest restart there is."""

    def __init__(self, processes: Processes) -> None:
        require("redis-server", shutil.which("redis-server") is not None)
        self.processes = processes
        self.port = free_port()
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> OwnRedis:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
        ]  # fmt: skip
        self.process = self.processes.start(f"redis-{len(self.processes.started)}", command, {})
        wait_until(lambda: port_open(self.port), 30, "redis-server", watch=[self.process])
        return self

    def restart(self) -> None:
        assert self.process is not None
        self.process.stop()
        self.start()
