"""A fresh install's first admin: ``relance up`` at a terminal asks for it, and without a
terminal (a service, CI) it says how to make one and starts anyway."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from relance.processes import free_port, wait_until
from tests.support.stack import UNPACED, relance_command

PASSWORD = "correct horse battery"
DEADLINE = 120.0  # the first migration and start on a slow, shared machine


class Terminal:
    """``relance up`` on a pseudo-terminal: what it prints is read back, answers typed in."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, start_new_session=True
        )
        os.close(slave)
        self.seen = ""

    def expect(self, text: str) -> None:
        """Read until ``text`` has appeared (or fail at the deadline with what was seen)."""
        end = time.monotonic() + DEADLINE
        while text not in self.seen:
            assert time.monotonic() < end, f"{text!r} never came; seen:\n{self.seen[-3000:]}"
            assert self.process.poll() is None, f"relance up exited:\n{self.seen[-3000:]}"
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                self.seen += os.read(self.master, 4096).decode(errors="replace")

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())

    def drain(self) -> None:
        while select.select([self.master], [], [], 0)[0]:
            try:
                self.seen += os.read(self.master, 4096).decode(errors="replace")
            except OSError:
                return

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            os.close(self.master)


@pytest.mark.e2e
def test_up_at_a_terminal_asks_for_the_first_admin_who_then_signs_in(tmp_path: Path) -> None:
    env = {**os.environ, **UNPACED, "RELANCE_DATA_DIR": str(tmp_path / "data")}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env["PUBLIC_URL"] = base
    up = Terminal(relance_command("up", "--port", str(port)), env, tmp_path)
    try:
        up.expect("Nobody can sign in yet")
        up.expect("email: ")
        up.type("ada@example.com")
        up.expect("password")
        up.type(PASSWORD)
        up.expect("again")
        up.type(PASSWORD)
        up.expect("ada@example.com is an admin")
        up.expect("relance is up")

        def healthy() -> bool:
            up.drain()
            return httpx.get(f"{base}/health", timeout=1).status_code == 200

        wait_until(healthy, DEADLINE, "relance up to answer", ignore=(httpx.HTTPError,))
        form = {"email": "ada@example.com", "password": PASSWORD}
        r = httpx.post(f"{base}/login", data=form, headers={"Origin": base}, timeout=30)
        assert r.status_code == 303, r.text
        assert r.cookies.get("relance_session")
    finally:
        assert up.stop() == 0, up.seen[-3000:]


@pytest.mark.e2e
def test_up_without_a_terminal_says_how_to_make_the_first_admin(tmp_path: Path) -> None:
    env = {**os.environ, **UNPACED, "RELANCE_DATA_DIR": str(tmp_path / "data")}
    port = free_port()
    up = subprocess.Popen(
        relance_command("up", "--port", str(port)),
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    # Reading lines blocks: past the deadline, the process is killed and its output ends.
    deadline = threading.Timer(DEADLINE, lambda: os.killpg(up.pid, signal.SIGKILL))
    deadline.start()
    try:
        assert up.stdout is not None
        lines: list[str] = []
        for line in up.stdout:
            lines.append(line)
            if "relance is up" in line:
                break
        said = "".join(lines)
        assert "nobody can sign in to the dashboard yet" in said, said
        assert "relance user create --email you@example.com --role admin" in said
    finally:
        deadline.cancel()
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGTERM)
        assert up.wait(timeout=60) == 0
