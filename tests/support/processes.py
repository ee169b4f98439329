"""Real processes for end-to-end tests: start with an env and a log file, wait with deadlines, stop.

Each process starts in a session of its own, so it leads its own process group: stopping it stops
what it started too (a Celery prefork pool, uvicorn workers). ``Processes`` owns several and stops
them all, in reverse order, even when the test failed; register ``stop_all`` as a fixture
finalizer before starting anything::

    @pytest.fixture
    def processes(request: pytest.FixtureRequest, tmp_path: Path) -> Processes:
        procs = Processes(tmp_path / "logs")
        request.addfinalizer(procs.stop_all)
        return procs

Waiting is polling with a deadline (``wait_until``), never a fixed sleep; a watched process that
dies while we wait fails the wait at once, with the tail of its log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx

from relance.runner import free_port

__all__ = ["free_port"]  # one free-port helper: relance's own

T = TypeVar("T")
STOP_GRACE_SECONDS = 10.0


class ProcessDied(AssertionError):
    """A process a test relies on exited; the message carries its log tail."""


@dataclass
class Process:
    """One started process: its handle, its name for messages, its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise ProcessDied(f"{self.name} exited with code {code}:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL its whole group at once: it dies mid-work, as in a machine crash."""
        _signal_group(self.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds; returns its exit code."""
        return stop_process(self, grace)


def start_process(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    cwd: Path | None = None,
    inherit_env: bool = True,
) -> Process:
    """Start ``args`` in a new process group, stdout and stderr to ``log_dir/<name>.log``.

    ``env`` is added to this process's environment (``inherit_env=False``: used alone).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = {**os.environ, **env} if inherit_env else dict(env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            list(args),
            env=full_env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Process(name, popen, log_path)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(pgid, sig)


def stop_process(process: Process, grace: float = STOP_GRACE_SECONDS) -> int | None:
    """Stop a process and its group: SIGTERM, then SIGKILL if it outlives ``grace``."""
    pgid = process.pid  # start_new_session: the process leads a group of its own id
    if process.alive():
        _signal_group(pgid, signal.SIGTERM)
        try:
            process.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            process.popen.wait(timeout=grace)
    # Children the leader left behind (it died first, or ignored them) must not outlive the test.
    _signal_group(pgid, signal.SIGKILL)
    return process.popen.returncode


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
    watch: Iterable[Process] = (),
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll ``condition`` until it returns a truthy value, and return that value.

    Fails with ``what`` at the deadline (with the last exception ignored and the watched logs),
    or as soon as a watched process dies.
    """
    watched = list(watch)
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for process in watched:
            process.check_alive()
        try:
            value = condition()
        except ignore as exc:
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error is not None else ""
            logs = "".join(f"\n--- {p.name} ---\n{p.log_tail()}" for p in watched)
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}{detail}{logs}"
            )
        time.sleep(interval)


def wait_for_port(
    host: str, port: int, timeout: float = 30.0, watch: Iterable[Process] = ()
) -> None:
    """Until something accepts TCP connections on host:port."""

    def accepting() -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((host, port)) == 0

    wait_until(accepting, timeout, f"{host}:{port} to accept connections", watch=watch)


def wait_for_http(
    url: str, timeout: float = 30.0, watch: Iterable[Process] = (), status: int = 200
) -> httpx.Response:
    """Until GET ``url`` answers ``status``; returns that response."""

    def answered() -> httpx.Response | None:
        response = httpx.get(url, timeout=2)
        return response if response.status_code == status else None

    return wait_until(
        answered, timeout, f"GET {url} to answer {status}", watch=watch, ignore=(httpx.HTTPError,)
    )


@dataclass
class Processes:
    """The processes of one test, all stopped together (register ``stop_all`` as a finalizer)."""

    log_dir: Path
    started: list[Process] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str],
        cwd: Path | None = None,
        inherit_env: bool = True,
    ) -> Process:
        process = start_process(name, args, env, self.log_dir, cwd, inherit_env)
        self.started.append(process)
        return process

    def check_alive(self) -> None:
        for process in self.started:
            process.check_alive()

    def logs(self, lines: int = 40) -> str:
        return "".join(f"\n--- {p.name} ---\n{p.log_tail(lines)}" for p in self.started)

    def stop_all(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop every process, last started first; never raises for one that is already gone."""
        for process in reversed(self.started):
            stop_process(process, grace)
