"""A reviewer's marks per image path ("good" / "defective"), in `RUN/feedback.sqlite`.

The file survives restarts; SQLite's locking (WAL journal, a busy timeout, one short transaction per
mark) keeps concurrent marks from corrupting it.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from defectlens.errors import CheckpointError, ConfigError

MARKS = ("good", "defective")


class FeedbackStore:
    """Marks per image path in a SQLite file.

    Args:
        path: the database file (created with its table on first use).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(
                "CREATE TABLE IF NOT EXISTS marks (path TEXT PRIMARY KEY, mark TEXT NOT NULL "
                "CHECK (mark IN ('good', 'defective')), updated REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(self.path, timeout=30)
        except sqlite3.Error as error:
            raise CheckpointError(f"cannot open feedback database {self.path}: {error}") from error

    def set(self, path: str, mark: str | None) -> None:
        """Store `mark` ("good" or "defective") for `path`; `None` removes it."""
        if mark is not None and mark not in MARKS:
            raise ConfigError(f"mark must be one of {list(MARKS)} or null, got {mark!r}")
        connection = self._connect()
        try:
            with connection:  # one transaction: committed, or rolled back on error
                if mark is None:
                    connection.execute("DELETE FROM marks WHERE path = ?", (path,))
                else:
                    connection.execute(
                        "INSERT INTO marks (path, mark, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT(path) DO UPDATE SET mark = excluded.mark, updated = excluded.updated",
                        (path, mark, time.time()),
                    )
        finally:
            connection.close()

    def all(self) -> dict[str, str]:
        """Every mark: path -> "good" | "defective"."""
        connection = self._connect()
        try:
            return dict(connection.execute("SELECT path, mark FROM marks ORDER BY path").fetchall())
        finally:
            connection.close()
