"""``relance up``: the API, one worker and exactly one Beat as child processes, stopped together.

Each child is ``python -m relance <role>`` with the same environment, so every process reads the
same configuration. SIGINT/SIGTERM stop the children (SIGTERM, then SIGKILL after a grace
period); a child that dies on its own stops the others: no orphan is ever left behind.
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from relance.config import Settings
from relance.leases import FileLease, LeaseHeld
from relance.logs import configure_logging
from relance.processes import Process, start_process, stop_together, wait_until

STOP_GRACE_SECONDS = 15.0
# Set for the children: the banner already said where they work, they need not say it again.
CHILD_ENV = "RELANCE_UP_CHILD"


@dataclass
class Stack:
    """The child processes of one ``relance up``."""

    env: dict[str, str]
    host: str
    port: int
    procs: dict[str, Process] = field(default_factory=dict)
    log_dir: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        roles = {
            "api": ["api", "--host", self.host, "--port", str(self.port)],
            "worker": ["worker"],
            "beat": ["beat"],
        }
        for role, args in roles.items():
            self.procs[role] = start_process(
                role,
                [sys.executable, "-m", "relance", *args],
                self.env,
                # Without a log directory the children write to our terminal.
                Path(self.log_dir) if self.log_dir else None,
                inherit_env=False,
                # In our process group: a Ctrl-C in the terminal reaches every child.
                own_group=False,
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the API answers /health (or a child dies, or time runs out)."""
        import httpx

        def answers() -> bool:
            self.check_alive()
            try:
                return httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        message = f"the API did not answer on {self.base_url} within {timeout:.0f} s"
        wait_until(answers, timeout, "the API", error=lambda _: TimeoutError(message))

    def check_alive(self) -> None:
        for role, proc in self.procs.items():
            code = proc.returncode
            if code is not None:
                raise ChildExited(role, code)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        stop_together(self.procs.values(), grace)


class ChildExited(RuntimeError):
    def __init__(self, role: str, code: int) -> None:
        super().__init__(f"the {role} process exited with code {code}")
        self.role = role
        self.code = code


def stack_env(
    settings: Settings, host: str, port: int, extra: Mapping[str, str] = {}
) -> dict[str, str]:
    """The children's environment: ours, plus what every process must agree on."""
    env = dict(os.environ)
    env.update(
        {
            "HOST": host,
            "PORT": str(port),
            "PUBLIC_URL": settings.public_url or f"http://{host}:{port}",
            "RELANCE_DATA_DIR": str(settings.data_dir.resolve()),
            "PYTHONUNBUFFERED": "1",
            CHILD_ENV: "1",
        }
    )
    env.update(extra)
    return env


@contextmanager
def running_stack(
    settings: Settings,
    host: str,
    port: int,
    extra_env: Mapping[str, str] = {},
    log_dir: str | None = None,
) -> Iterator[Stack]:
    """Start the stack, yield it once the API answers, always stop it."""
    from relance.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings)
    stack = Stack(stack_env(settings, host, port, extra_env), host, port, log_dir=log_dir)
    try:
        stack.start()
        stack.wait_ready()
        yield stack
    finally:
        stack.stop()


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def port_taken(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _first_admin(settings: Settings) -> None:
    """A fresh install asks for its first admin at a terminal, and says how to make one else."""
    from relance.accounts.first_admin import HINT, ask_first_admin
    from relance.accounts.users import can_sign_in_count
    from relance.db import session_scope
    from relance.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings)
    with session_scope(settings) as session:
        if sys.stdin.isatty() and sys.stdout.isatty():
            ask_first_admin(session, input, getpass.getpass, print)
        elif not can_sign_in_count(session):
            print(f"relance: {HINT}", file=sys.stderr, flush=True)


def run_stack(settings: Settings, host: str | None = None, port: int | None = None) -> int:
    """Run until Ctrl-C / SIGTERM; 0 on a clean stop, 1 if it could not start or a child died.

    Nothing starts while another ``relance up`` holds the data directory, or the port is taken.
    """
    configure_logging(settings.log_level, settings.log_json)
    host = host or settings.host
    port = port or settings.port
    lease = FileLease(settings.data_dir / "up.lock")
    try:
        lease.acquire()
    except LeaseHeld as held:
        print(
            f"relance: another relance up ({held}) runs on the data directory "
            f"{settings.data_dir.resolve()}: stop it first, or set RELANCE_DATA_DIR",
            file=sys.stderr,
        )
        return 1
    if port_taken(host, port):
        lease.release()
        print(f"relance: port {port} on {host} is in use: set PORT or --port", file=sys.stderr)
        return 1
    try:
        _first_admin(settings)
    except (EOFError, KeyboardInterrupt):
        lease.release()
        print(file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        with running_stack(settings, host, port) as stack:
            mode = "embedded: SQLite, filesystem broker" if settings.is_embedded else "production"
            print(f"relance is up ({mode}), provider {settings.provider}", flush=True)
            print(f"  dashboard:  {stack.base_url}/  (API docs: /docs)", flush=True)
            print(f"  database:   {settings.database_shown}", flush=True)
            print(f"  data:       {settings.data_dir_shown}", flush=True)
            print("  users:      relance user create    API key: relance apikey create", flush=True)
            print("  (Ctrl-C stops everything)", flush=True)
            while True:
                stack.check_alive()
                time.sleep(0.5)
    except _Stop as stop:
        print(f"relance: {stop}: stopping", file=sys.stderr, flush=True)
        return 0
    except ChildExited as exc:
        print(f"relance: {exc}; stopped the others", file=sys.stderr, flush=True)
        return 1
    except TimeoutError as exc:
        print(f"relance: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        lease.release()
