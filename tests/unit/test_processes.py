"""relance.processes: what ``relance up``, the bench and the e2e tests rely on to start and stop."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from relance.processes import ProcessDied, start_process, wait_until

# Ignores SIGTERM, starts a child that sleeps, prints the child's pid, then sleeps itself.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(child.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stop_kills_a_process_that_ignores_sigterm_and_its_children(tmp_path: Path) -> None:
    process = start_process("stubborn", [sys.executable, "-c", STUBBORN], {}, tmp_path)
    child = int(wait_until(lambda: process.log_tail().strip(), 30, "the child's pid", 0.02))

    started = time.monotonic()
    process.stop(grace=0.5)

    assert time.monotonic() - started < 10
    assert not process.alive()
    wait_until(lambda: _gone(child), 10, "the child to be killed with its group", 0.02)


def test_a_watched_process_that_dies_fails_the_wait_at_once_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('out of coffee'); sys.exit(3)"
    process = start_process("short", [sys.executable, "-c", code], {}, tmp_path)

    started = time.monotonic()
    with pytest.raises(ProcessDied, match="short exited with code 3:\nout of coffee") as died:
        wait_until(lambda: False, 60, "something that never comes", watch=[process])

    assert died.value.code == 3
    assert time.monotonic() - started < 30


def test_the_deadline_raises_the_callers_error() -> None:
    class Unmeasured(Exception):
        pass

    with pytest.raises(Unmeasured, match="timed out after 0 s waiting for the moon"):
        wait_until(lambda: None, 0.05, "the moon", 0.01, error=Unmeasured)


def test_a_process_in_our_group_shares_it_and_our_output(tmp_path: Path) -> None:
    process = start_process(
        "ours", [sys.executable, "-c", "import time; time.sleep(600)"], {}, None, own_group=False
    )
    try:
        assert os.getpgid(process.pid) == os.getpgid(0)
        assert process.log_path is None
    finally:
        process.stop(grace=5)
    assert not process.alive()
