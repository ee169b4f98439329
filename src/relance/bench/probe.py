"""Where the time of a database-bound step goes: every statement it ran, timed.

The breakdown lands in the JSON report's details, so a figure that misses its target says
which query stands in the way (and how many round trips a call costs).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event


@dataclass
class StatementTimes:
    statements: list[tuple[str, float]] = field(default_factory=list)
    _started: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)

    def top(self, n: int = 6) -> list[dict[str, Any]]:
        """The slowest statements, their SQL shortened to one line."""
        ranked = sorted(self.statements, key=lambda s: -s[1])[:n]
        return [{"ms": round(ms, 2), "sql": " ".join(sql.split())[:160]} for sql, ms in ranked]


@contextmanager
def time_statements(engine: Engine) -> Iterator[StatementTimes]:
    times = StatementTimes()

    def before(*_: Any) -> None:
        times._started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        started = times._started.pop() if times._started else time.perf_counter()
        times.statements.append((statement, (time.perf_counter() - started) * 1000))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield times
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
