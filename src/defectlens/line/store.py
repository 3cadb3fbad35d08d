"""The station's durable state in one SQLite file: which files were scored, and what is still to send.

A result is queued for every network sink and its file marked as scored in one transaction, so a
restart neither scores a file twice nor loses a result that was not yet delivered.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

from defectlens.errors import CheckpointError

STATE_FILE = "station.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scored (source TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (source, key));
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_by_sink ON spool (sink, id);
"""


class StationStore:
    """The ledger of scored files and the spool of undelivered messages, shared by threads.

    Args:
        folder: where `station.sqlite` lives (created if missing).
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / STATE_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise CheckpointError(f"cannot open the station state {self.path}: {error}") from error
        self._lock = threading.Lock()

    def is_scored(self, source: str, key: str) -> bool:
        with (
            self._lock,
            closing(
                self._db.execute("SELECT 1 FROM scored WHERE source = ? AND key = ?", (source, key))
            ) as rows,
        ):
            return rows.fetchone() is not None

    def record(
        self, payloads: Iterable[tuple[str, dict[str, Any]]], scored: Iterable[tuple[str, str]]
    ) -> None:
        """Queue `(sink, payload)` pairs and mark the `scored` (source, key) pairs done, all or nothing."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO spool (sink, payload) VALUES (?, ?)",
                    [(sink, json.dumps(payload)) for sink, payload in payloads],
                )
                self._db.executemany("INSERT OR IGNORE INTO scored (source, key) VALUES (?, ?)", scored)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending(self, sink: str, after: int = 0, limit: int = 100) -> list[tuple[int, str]]:
        """Up to `limit` undelivered (id, JSON payload) of `sink` with id > `after`, oldest first."""
        with (
            self._lock,
            closing(
                self._db.execute(
                    "SELECT id, payload FROM spool WHERE sink = ? AND id > ? ORDER BY id LIMIT ?",
                    (sink, after, limit),
                )
            ) as rows,
        ):
            return rows.fetchall()

    def count_pending(self, sink: str) -> int:
        with (
            self._lock,
            closing(self._db.execute("SELECT COUNT(*) FROM spool WHERE sink = ?", (sink,))) as rows,
        ):
            return int(rows.fetchone()[0])

    def delivered(self, message_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE id = ?", (message_id,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
