"""The phones a CSV import has read so far, and the line of each: kept on disk, not in memory.

A 64 MiB file can hold six million phones; a dict of them would take several hundred MB of the
API process. A private SQLite file in the temporary directory answers the same question with
a page cache of a few MB, and is deleted when the import ends.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from types import TracebackType


class SeenPhones:
    """``first_line(phone, line)``: the line that first had ``phone``, remembering new ones."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="relance-import-")
        self._db = sqlite3.connect(Path(self._dir.name) / "phones.db", isolation_level=None)
        # Scratch data for one request: no journal, no fsync, one transaction never committed.
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._db.execute("CREATE TABLE seen (phone TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")
        self._db.execute("BEGIN")

    def first_line(self, phone: str, line: int) -> int | None:
        """None if ``phone`` is new (it is now seen on ``line``), else the line it was seen on."""
        inserted = self._db.execute(
            "INSERT INTO seen (phone, line) VALUES (?, ?) ON CONFLICT DO NOTHING", (phone, line)
        )
        if inserted.rowcount:
            return None
        row = self._db.execute("SELECT line FROM seen WHERE phone = ?", (phone,)).fetchone()
        return int(row[0])

    def close(self) -> None:
        self._db.close()
        self._dir.cleanup()

    def __enter__(self) -> SeenPhones:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
