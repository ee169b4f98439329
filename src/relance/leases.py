"""Leases: what only one process may do at a time, held for as long as it lives.

* one ``relance up`` per data directory: a file lock (``flock``) in the data directory;
* one ticking Beat per deployment: a PostgreSQL advisory lock on a connection of its own, or the
  same file lock in embedded mode. A second Beat waits for the lease instead of ticking every
  periodic task a second time.

The operating system (or PostgreSQL, when the connection drops) releases a lease when its holder
dies: a crashed holder never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from relance.config import Settings

log = logging.getLogger(__name__)
BEAT_LEASE_KEY = 0x7265_6C61_6E63  # "relanc": one advisory lock number for every Beat
CHECK_SECONDS = 5.0


class LeaseHeld(Exception):
    """Another process holds the lease; the message says which, when it is known."""


def holder_text() -> str:
    return f"pid {os.getpid()} on {os.uname().nodename}"


class FileLease:
    """An exclusive ``flock`` on a file, which holds who holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lease now, or raise LeaseHeld naming its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LeaseHeld(holder) from None
        os.ftruncate(fd, 0)
        os.write(fd, holder_text().encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None


class PostgresLease:
    """A session-level advisory lock on a connection kept for the lease's life."""

    def __init__(self, database_url: str, key: int = BEAT_LEASE_KEY) -> None:
        self.database_url = database_url
        self.key = key
        self._conn: object | None = None

    def acquire(self) -> None:
        import psycopg

        conninfo = self.database_url.replace("postgresql+psycopg://", "postgresql://")
        conn = psycopg.connect(conninfo, autocommit=True)
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
        if not (row and row[0]):
            pid = conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s LIMIT 1",
                (self.key & 0xFFFF_FFFF,),
            ).fetchone()
            conn.close()
            raise LeaseHeld(f"the PostgreSQL backend {pid[0]}" if pid else "another process")
        self._conn = conn

    def alive(self) -> bool:
        """Is the lease still ours (its connection still up)?"""
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.execute("SELECT 1")  # type: ignore[attr-defined]
            return True
        except Exception:
            return False

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()  # type: ignore[attr-defined]
            self._conn = None


def beat_lease(settings: Settings) -> FileLease | PostgresLease:
    if settings.is_embedded:
        return FileLease(settings.data_dir / "beat.lock")
    return PostgresLease(settings.effective_database_url)


def wait_for(lease: FileLease | PostgresLease, what: str, poll: float = 1.0) -> None:
    """Block until the lease is ours; say once who holds it meanwhile."""
    said = False
    while True:
        try:
            lease.acquire()
            if said:
                log.warning("%s: lease taken over; starting", what)
            return
        except LeaseHeld as held:
            if not said:
                log.warning("%s: waiting, %s holds the lease", what, held)
                said = True
        except Exception as exc:  # the database is away: keep trying
            if not said:
                log.warning("%s: cannot take the lease yet (%s)", what, exc)
                said = True
        time.sleep(poll)


def watch(lease: FileLease | PostgresLease, on_lost: Callable[[], None]) -> None:
    """Keep a PostgreSQL lease: a daemon thread that takes it again if its connection drops.

    A dropped connection (PostgreSQL restarted) released the advisory lock. The lease is taken
    again as soon as the database answers; if another Beat took it first, it is ticking now, so
    this one must stop (``on_lost``). A file lease cannot drop: nothing to watch.
    """
    if not isinstance(lease, PostgresLease):
        return

    def keep() -> None:
        while True:
            time.sleep(CHECK_SECONDS)
            if lease.alive():
                continue
            lease.release()
            log.warning("the lease's database connection dropped: taking the lease again")
            while True:
                try:
                    lease.acquire()
                    break
                except LeaseHeld:
                    on_lost()
                    return
                except Exception:  # the database is still away
                    time.sleep(1.0)

    threading.Thread(target=keep, name="lease-keeper", daemon=True).start()
