"""Child processes for ``relance up``, the bench and the tests: start, wait with a deadline, stop.

A process started with ``own_group=True`` (the default) runs in a session of its own, so it leads
its own process group: stopping it stops what it started too (a Celery prefork pool, uvicorn
workers), and a Ctrl-C in the terminal reaches only the parent, which stops it in order.
``relance up`` starts its children in its own group instead: a Ctrl-C reaches them all.

Waiting is polling with a deadline (``wait_until``), never a fixed sleep; a watched process that
dies during the wait fails it at once, with the tail of its log. Only the standard library is
imported here (httpx only inside ``wait_for_http``): ``relance up`` starts with it.
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
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")
STOP_GRACE_SECONDS = 10.0


class ProcessDied(RuntimeError):
    """A process the caller relies on exited; the message carries the tail of its log."""

    def __init__(self, name: str, code: int, log_tail: str = "") -> None:
        super().__init__(f"{name} exited with code {code}" + (f":\n{log_tail}" if log_tail else ""))
        self.name = name
        self.code = code


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


@dataclass
class Process:
    """One started process: its handle, its name for messages, its log file (None: inherited)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None
    own_group: bool = True

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return ""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise ProcessDied(self.name, code, self.log_tail())

    def signal(self, sig: signal.Signals, group: bool = True) -> None:
        """To its whole group (when it leads one and ``group``), else to the process alone."""
        if group and self.own_group:
            # start_new_session: the process leads a group of its own id. The group may outlive
            # its leader (children it left behind), so it is signalled even after the leader died.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, sig)
        elif self.popen.poll() is None:  # never a reaped pid: it may belong to another process
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL (its whole group) at once: it dies mid-work, as in a machine crash."""
        self.signal(signal.SIGKILL)
        self.popen.wait()

    def stop(self, grace: float = STOP_GRACE_SECONDS, terminate_group: bool = True) -> int | None:
        """SIGTERM (to its group, or to the leader alone: its own orderly shutdown), SIGKILL
        after ``grace`` seconds; then whatever is left of its group. Returns its exit code."""
        if self.alive():
            self.signal(signal.SIGTERM, group=terminate_group)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        # Children the leader left behind (it died first, or ignored them) must not outlive it.
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=grace)
        return self.popen.returncode


def start_process(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path | None,
    cwd: Path | None = None,
    inherit_env: bool = True,
    own_group: bool = True,
) -> Process:
    """Start ``args``, stdout and stderr appended to ``log_dir/<name>.log`` (None: ours).

    ``env`` is added to this process's environment (``inherit_env=False``: used alone).
    """
    full_env = {**os.environ, **env} if inherit_env else dict(env)
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    log_path = None
    with contextlib.ExitStack() as stack:  # the child keeps its own copy of the descriptor
        out = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            log_path = log_dir / f"{name}.log"
            out = stack.enter_context(log_path.open("ab"))
        popen = subprocess.Popen(
            list(args),
            env=full_env,
            cwd=cwd,
            # In our group (``relance up``) it shares our terminal, stdin included.
            stdin=subprocess.DEVNULL if own_group else None,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=own_group,
        )
    return Process(name, popen, log_path, own_group)


def stop_together(processes: Iterable[Process], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM to every process at once, then one shared ``grace`` before any SIGKILL."""
    procs = list(processes)
    for process in procs:
        if process.alive():
            process.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        process.signal(signal.SIGKILL)
        process.popen.wait()


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
    watch: Iterable[Process] = (),
    ignore: tuple[type[BaseException], ...] = (),
    error: Callable[[str], Exception] = TimeoutError,
) -> T:
    """Poll ``condition`` until it returns a truthy value, and return that value.

    At the deadline, raises ``error`` naming ``what`` (with the last exception ignored and the
    watched logs); as soon as a watched process dies, raises ``ProcessDied``.
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
            raise error(f"timed out after {timeout:.0f} s waiting for {what}{detail}{logs}")
        time.sleep(interval)


def wait_for_port(
    host: str,
    port: int,
    timeout: float = 30.0,
    watch: Iterable[Process] = (),
    error: Callable[[str], Exception] = TimeoutError,
) -> None:
    """Until something accepts TCP connections on host:port."""
    what = f"{host}:{port} to accept connections"
    wait_until(lambda: port_open(port, host), timeout, what, watch=watch, error=error)


def wait_for_http(
    url: str, timeout: float = 30.0, watch: Iterable[Process] = (), status: int = 200
) -> httpx.Response:
    """Until GET ``url`` answers ``status``; returns that response."""
    import httpx

    def answered() -> httpx.Response | None:
        response = httpx.get(url, timeout=2)
        return response if response.status_code == status else None

    return wait_until(
        answered, timeout, f"GET {url} to answer {status}", watch=watch, ignore=(httpx.HTTPError,)
    )


@dataclass
class Processes:
    """Processes started together and stopped together, last started first, even after a
    failure: register ``stop_all`` (a fixture finalizer, an ExitStack callback) before starting
    anything. ``terminate_group=False``: SIGTERM to each leader alone (its own shutdown)."""

    log_dir: Path
    grace: float = STOP_GRACE_SECONDS
    terminate_group: bool = True
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

    def stop(self, process: Process) -> None:
        """Stop one of them before the others (a limit measured on the side), and forget it."""
        process.stop(self.grace, self.terminate_group)
        self.started.remove(process)

    def check_alive(self) -> None:
        for process in self.started:
            process.check_alive()

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.log_tail(lines)}" for p in self.started)

    def stop_all(self) -> None:
        """Stop every process, last started first; never raises for one that is already gone."""
        for process in reversed(self.started):
            process.stop(self.grace, self.terminate_group)
