"""The durable outbox: a SQLite file of compacted sessions to upload, per target, with their progress."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

OUTBOX_DB_NAME = ".outbox.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    target TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT,
    queued_at REAL NOT NULL,
    done_at REAL,
    UNIQUE (path, target)
);
CREATE TABLE IF NOT EXISTS objects (
    entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    verified_at REAL,
    upload_id TEXT,
    part_size INTEGER,
    PRIMARY KEY (entry_id, key)
);
"""
_VERSION = 1


class EntryState(StrEnum):
    """Where a queued session stands for one target."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Entry:
    """A compacted session queued for one target."""

    id: int
    path: str
    target: str
    manifest_sha256: str
    state: EntryState
    attempts: int
    next_attempt_at: float
    last_error: str | None
    queued_at: float
    done_at: float | None


class Outbox:
    """The queue file. Every change is committed at once (``synchronous=FULL``).

    A session is queued once per target. ``done`` is written only after every object of
    the session has been verified on the target; the verified objects and any multipart
    upload in progress are recorded, so an interrupted upload resumes where it stopped.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # One user at a time (the uploader), possibly from a thread other than the
        # one that opened it.
        self._db = sqlite3.connect(
            path, isolation_level=None, timeout=30, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > _VERSION:
            raise RuntimeError(
                f"{path}: outbox schema {version} is newer than {_VERSION}"
            )
        with self._tx():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- queue ------------------------------------------------------------------
    def enqueue(self, path: str, target: str, manifest_sha256: str) -> bool:
        """Queue a set for a target; False if it is already queued with that manifest.

        A set compacted again (a different manifest) goes back to pending with its
        progress forgotten; the target then reports a conflict if it holds the old one.
        """
        now = time.time()
        with self._tx():
            row = self._db.execute(
                "SELECT id, manifest_sha256 FROM entries WHERE path=? AND target=?",
                (path, target),
            ).fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO entries (path, target, manifest_sha256, state, queued_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (path, target, manifest_sha256, EntryState.PENDING, now),
                )
                return True
            if row[1] == manifest_sha256:
                return False
            self._db.execute("DELETE FROM objects WHERE entry_id=?", (row[0],))
            self._db.execute(
                "UPDATE entries SET manifest_sha256=?, state=?, attempts=0,"
                " next_attempt_at=0, last_error=NULL, queued_at=?, done_at=NULL"
                " WHERE id=?",
                (manifest_sha256, EntryState.PENDING, now, row[0]),
            )
            return True

    def entries(self, target: str | None = None) -> list[Entry]:
        query = "SELECT * FROM entries"
        args: tuple[str, ...] = ()
        if target is not None:
            query += " WHERE target=?"
            args = (target,)
        rows = self._db.execute(query + " ORDER BY queued_at, id", args).fetchall()
        return [_entry(row) for row in rows]

    def get(self, entry_id: int) -> Entry:
        row = self._db.execute(
            "SELECT * FROM entries WHERE id=?", (entry_id,)
        ).fetchone()
        if row is None:
            raise KeyError(entry_id)
        return _entry(row)

    def due(self, target: str, now: float, *, ignore_wait: bool = False) -> list[Entry]:
        """Pending entries of ``target`` whose next attempt time has come."""
        return [
            e
            for e in self.entries(target)
            if e.state is EntryState.PENDING
            and (ignore_wait or e.next_attempt_at <= now)
        ]

    def requeue(self, target: str, state: EntryState) -> int:
        """Put ``failed`` (retry) or ``done`` (force) entries of a target back to pending."""
        with self._tx():
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM entries WHERE target=? AND state=?", (target, state)
                )
            ]
            for entry_id in ids:
                if state is EntryState.DONE:
                    # Force: verify every object again (uploads are still create-only).
                    self._db.execute(
                        "UPDATE objects SET verified_at=NULL WHERE entry_id=?",
                        (entry_id,),
                    )
                self._db.execute(
                    "UPDATE entries SET state=?, next_attempt_at=0, done_at=NULL"
                    " WHERE id=?",
                    (EntryState.PENDING, entry_id),
                )
        return len(ids)

    # ---- progress ------------------------------------------------------------------
    def verified_keys(self, entry_id: int) -> set[str]:
        rows = self._db.execute(
            "SELECT key FROM objects WHERE entry_id=? AND verified_at IS NOT NULL",
            (entry_id,),
        )
        return {r[0] for r in rows}

    def record_verified(self, entry_id: int, key: str) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO objects (entry_id, key, verified_at) VALUES (?, ?, ?)"
                " ON CONFLICT (entry_id, key) DO UPDATE SET verified_at=excluded.verified_at,"
                " upload_id=NULL, part_size=NULL",
                (entry_id, key, time.time()),
            )

    def multipart(self, entry_id: int, key: str) -> tuple[str, int] | None:
        """The multipart upload in progress for an object: (upload id, part size)."""
        row = self._db.execute(
            "SELECT upload_id, part_size FROM objects WHERE entry_id=? AND key=?"
            " AND upload_id IS NOT NULL",
            (entry_id, key),
        ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def save_multipart(
        self, entry_id: int, key: str, upload_id: str | None, part_size: int | None
    ) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO objects (entry_id, key, upload_id, part_size) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (entry_id, key) DO UPDATE SET upload_id=excluded.upload_id,"
                " part_size=excluded.part_size",
                (entry_id, key, upload_id, part_size),
            )

    def mark_done(self, entry_id: int) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE entries SET state=?, done_at=?, last_error=NULL WHERE id=?",
                (EntryState.DONE, time.time(), entry_id),
            )

    def mark_retry(self, entry_id: int, error: str, next_attempt_at: float) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE entries SET state=?, attempts=attempts+1, last_error=?,"
                " next_attempt_at=? WHERE id=?",
                (EntryState.PENDING, error, next_attempt_at, entry_id),
            )

    def mark_failed(self, entry_id: int, error: str) -> None:
        with self._tx():
            self._db.execute(
                "UPDATE entries SET state=?, attempts=attempts+1, last_error=? WHERE id=?",
                (EntryState.FAILED, error, entry_id),
            )


def _entry(row: Any) -> Entry:
    entry_id, path, target, sha, state, attempts, next_at, error, queued, done = row
    return Entry(
        id=int(entry_id),
        path=str(path),
        target=str(target),
        manifest_sha256=str(sha),
        state=EntryState(state),
        attempts=int(attempts),
        next_attempt_at=float(next_at),
        last_error=None if error is None else str(error),
        queued_at=float(queued),
        done_at=None if done is None else float(done),
    )
