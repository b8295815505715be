"""The shim's disk spool: every encoded message is kept here until the appliance has it."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple


class SpoolEntry(NamedTuple):
    """One spooled message: its sequence number (the send order), topic, wire bytes."""

    seq: int
    topic: str
    payload: bytes


class Spool:
    """An append-only SQLite queue, in order, surviving restarts of the shim.

    Sequence numbers are allocated here too, so they keep increasing across restarts;
    a brand-new spool starts from the current time in microseconds, so a reinstalled
    shim never reuses numbers the appliance has already seen. A message's sequence
    number is its row's key: the send order, and what the core's cumulative
    acknowledgement deletes by (``delete_up_to``).
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
                "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER)"
            )
            self._upgrade()
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY,"
                " topic TEXT NOT NULL,"
                " payload BLOB NOT NULL)"
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
                "INSERT INTO outbox (seq, topic, payload) VALUES (?, ?, ?)",
                (seq, topic, payload_for_seq),
            )
            self._db.execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES ('seq', ?)", (seq,)
            )
            self._db.execute("COMMIT")

    def next_seq(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def pending(self, after_seq: int, limit: int) -> list[SpoolEntry]:
        """Up to ``limit`` messages after sequence number ``after_seq``, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ?"
                " ORDER BY seq LIMIT ?",
                (after_seq, limit),
            ).fetchall()
        return [SpoolEntry(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]

    def delete(self, seqs: list[int]) -> None:
        """Delete these messages (the broker acknowledged them: old appliances)."""
        if not seqs:
            return
        with self._lock:
            self._db.executemany(
                "DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in seqs]
            )

    def delete_up_to(self, seq: int) -> int:
        """Delete every message up to sequence number ``seq``; how many went."""
        with self._lock:
            return self._db.execute(
                "DELETE FROM outbox WHERE seq <= ?", (seq,)
            ).rowcount

    @property
    def core_acks_seen(self) -> bool:
        """Whether the appliance's core has ever acknowledged a message of this spool."""
        with self._lock:
            row = self._db.execute("SELECT v FROM meta WHERE k='core_acks'").fetchone()
        return bool(row and row[0])

    def note_core_acks(self) -> None:
        """Remember that the appliance acknowledges end to end (kept across restarts)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES ('core_acks', 1)"
            )

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def size_bytes(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM outbox"
            ).fetchone()
        return int(row[0])

    def _upgrade(self) -> None:
        """An older shim's spool keys its rows by an id: key them by sequence number."""
        columns = [r[1] for r in self._db.execute("PRAGMA table_info(outbox)")]
        if "id" not in columns:
            return
        rows = self._db.execute(
            "SELECT topic, payload FROM outbox ORDER BY id"
        ).fetchall()
        self._db.execute("BEGIN")
        self._db.execute("DROP TABLE outbox")
        self._db.execute(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY,"
            " topic TEXT NOT NULL, payload BLOB NOT NULL)"
        )
        self._db.executemany(
            "INSERT OR IGNORE INTO outbox (seq, topic, payload) VALUES (?, ?, ?)",
            [(_envelope_seq(bytes(p)), str(t), bytes(p)) for t, p in rows],
        )
        self._db.execute("COMMIT")


def _envelope_seq(payload: bytes) -> int:
    """The sequence number in a wire message's envelope; 0 if it has none.

    The envelope starts ``b"PBX" | schema u8 | type u8 | source_len u8 | source |
    seq u64`` (``driver_pc.protocol.codec``). The header is authenticated only when the
    message is opened; this is our own spool, read once when an old one is upgraded.
    """
    if len(payload) < 6 or payload[:3] != b"PBX":
        return 0
    start = 6 + payload[5]
    if len(payload) < start + 8:
        return 0
    return int.from_bytes(payload[start : start + 8], "little")
