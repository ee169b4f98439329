"""CPU used by each component during a phase, in % of one core (the machine has cpu_count cores).

It tells which process saturates when a figure misses its target: the worker or the API
(one Python process each, so 100 % per process at most without threads in C), PostgreSQL,
Redis, the fake Graph server, or the bench itself (posting the load). ``tree_rss``: the memory
of a process tree (the worker and its pool).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import psutil

from relance.bench.env import BenchEnv

SERVERS = {"postgres": "postgres", "redis-server": "redis"}


def _seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def _rss(proc: psutil.Process) -> float:
    return float(proc.memory_info().rss)


def _tree_sum(pid: int, measure: Callable[[psutil.Process], float]) -> float:
    """``measure`` summed over a process and all its children (0 for a process gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += measure(proc)
    return total


def tree_rss(pid: int) -> int:
    """Resident memory of a process and all its children, in bytes."""
    return int(_tree_sum(pid, _rss))


def _ours(title: str, database: str) -> bool:
    """A backend serving another database (someone else's tests) is not the bench's."""
    serves_a_client = "(" in title or "[local]" in title
    return database in title or not serves_a_client


def snapshot(env: BenchEnv) -> dict[str, float]:
    out = {name: _tree_sum(proc.pid, _seconds) for name, proc in env.procs.items() if proc.alive()}
    out["bench"] = _seconds(psutil.Process())
    database = env.database_url.rsplit("/", 1)[-1]
    for proc in psutil.process_iter(["name", "cmdline"]):
        label = SERVERS.get(proc.info["name"] or "")
        if label == "postgres" and not _ours(" ".join(proc.info["cmdline"] or []), database):
            continue
        if label:
            with contextlib.suppress(psutil.Error):
                out[label] = out.get(label, 0.0) + _seconds(proc)
    system = psutil.cpu_times()
    # guest time is already inside user time on Linux; idle and iowait are not busy.
    kernel = sum(getattr(system, f, 0.0) for f in ("irq", "softirq"))
    steal = getattr(system, "steal", 0.0)
    out["_busy"] = system.user + system.system + getattr(system, "nice", 0.0) + kernel + steal
    out["_kernel"], out["_steal"] = kernel, steal
    out["_at"] = time.perf_counter()
    return out


def utilisation(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """% of one core per component between two snapshots.

    ``machine`` is every core's busy time; ``kernel_irq`` the interrupt time no process is
    charged for (loopback traffic), ``steal`` what the hypervisor took; ``others`` what is
    left: processes outside the bench. When it is large, the figures of that phase were
    measured on a machine that was not idle.
    """
    seconds = after["_at"] - before["_at"]
    if seconds <= 0:
        return {}
    out = {
        name: round(100 * (after[name] - before.get(name, 0.0)) / seconds, 1)
        for name in after
        if not name.startswith("_")
    }
    for name in ("kernel", "steal"):
        out[f"{name}_irq" if name == "kernel" else name] = round(
            100 * (after[f"_{name}"] - before[f"_{name}"]) / seconds, 1
        )
    out["machine"] = round(100 * (after["_busy"] - before["_busy"]) / seconds, 1)
    out["others"] = round(out["machine"] - sum(v for k, v in out.items() if k != "machine"), 1)
    return out
