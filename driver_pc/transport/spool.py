"""The shim's disk spool: every encoded message is kept here until the broker acknowledged it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class Spool:
    """An append-only SQLite queue, in order, surviving restarts of the shim.

    Sequence numbers are allocated here too, so they keep increasing across restarts;
    a brand-new spool starts from the current time in microseconds, so a reinstalled
    shim never reuses numbers the appliance has already seen.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " topic TEXT NOT NULL,"
                " payload BLOB NOT NULL)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)"
            )
            row = self._db.execute("SELECT v FROM meta WHERE k='seq'").fetchone()
            self._seq = int(row[0]) if row else int(time.time() * 1_000_000)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, topic: str, payload_for_seq: bytes, seq: int) -> None:
        """Store one encoded message (built for ``seq``) and remember the sequence."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO outbox (topic, payload) VALUES (?, ?)",
                (topic, payload_for_seq),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES ('seq', ?)", (seq,)
            )
            self._db.execute("COMMIT")

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def pending(self, after_id: int, limit: int) -> list[tuple[int, str, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def delete(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def size_bytes(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
            ).fetchone()
        return int(row[0])
