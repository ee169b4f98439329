"""File leases (relance.leases): one holder at a time, named to the next; gone with its holder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relance.leases import FileLease, LeaseHeld


def test_a_second_holder_is_refused_with_the_first_ones_name(tmp_path: Path) -> None:
    first, second = FileLease(tmp_path / "up.lock"), FileLease(tmp_path / "up.lock")
    first.acquire()
    with pytest.raises(LeaseHeld, match=f"pid {os.getpid()}"):
        second.acquire()
    first.release()
    second.acquire()  # released: the next one takes it
    second.release()


def test_a_dead_holder_holds_nothing(tmp_path: Path) -> None:
    """The operating system drops the lock of a process that died, even killed."""
    code = (
        "import sys, os; from pathlib import Path; from relance.leases import FileLease; "
        f"FileLease(Path({str(tmp_path / 'up.lock')!r})).acquire(); os._exit(9)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 9
    lease = FileLease(tmp_path / "up.lock")
    lease.acquire()
    lease.release()
