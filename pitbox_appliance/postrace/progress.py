"""The pipeline's own durable progress: one row per session in a small SQLite file.

The worker is its only writer; the pit wall reads it read-only
(:func:`read_progress`). A session's row says which step it is at, so a restarted
or long-offline worker resumes there; every step is idempotent.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from driver_pc.protocol import data_dirs

SCHEMA = """
CREATE TABLE IF NOT EXISTS postrace (
    session_id INTEGER PRIMARY KEY,
    session_key TEXT NOT NULL,
    car TEXT NOT NULL,
    step TEXT NOT NULL,
    failed INTEGER NOT NULL DEFAULT 0,
    detail TEXT NOT NULL DEFAULT '',
    finished_by TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL DEFAULT '',
    report_url TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
)
"""


class Step(StrEnum):
    """Where a finished session is in the pipeline (in order)."""

    COMPACTING = "compacting"
    SYNCING = "syncing"
    REPORTING = "reporting"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Progress:
    """One session's row: its step, and why it failed last (``failed``) if it did."""

    session_id: int
    session_key: str
    car: str
    step: Step
    failed: bool
    detail: str
    finished_by: str
    path: str
    report_url: str
    attempts: int
    next_attempt_at: float
    updated_at: float

    @property
    def status(self) -> str:
        """What the pit wall shows: ``compacting``…``done``, or ``failed: why``."""
        if self.failed:
            return f"failed: {self.detail}"
        return str(self.step)


PROGRESS_FILE = "postrace.sqlite3"


def progress_file_for(db_url: str) -> Path:
    """``postrace.sqlite3`` beside the appliance database (where the pit wall looks)."""
    database = db_url.removeprefix("sqlite:///")
    if db_url.startswith("sqlite:///") and database and database != ":memory:":
        return Path(database).parent / PROGRESS_FILE
    return data_dirs.appliance_data_dir() / PROGRESS_FILE


class ProgressBook:
    """The worker's read-write handle on the progress file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def get(self, session_id: int) -> Progress | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM postrace WHERE session_id = ?", (session_id,)
        ).fetchone()
        return _progress(row) if row is not None else None

    def all(self) -> list[Progress]:
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM postrace ORDER BY session_id"
        ).fetchall()
        return [_progress(r) for r in rows]

    def start(self, session_id: int, session_key: str, car: str, why: str) -> None:
        """A session found finished: it enters the pipeline at compacting."""
        self._db.execute(
            "INSERT OR IGNORE INTO postrace (session_id, session_key, car, step,"
            " finished_by, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (session_id, session_key, car, Step.COMPACTING, why, time.time()),
        )

    def advance(self, session_id: int, step: Step, **fields: str) -> None:
        """The session's previous step is done: it is at ``step`` now (no failure)."""
        sets = "".join(f", {name} = ?" for name in fields)
        self._db.execute(
            f"UPDATE postrace SET step = ?, failed = 0, detail = '', attempts = 0,"
            f" next_attempt_at = 0, updated_at = ?{sets} WHERE session_id = ?",
            (step, time.time(), *fields.values(), session_id),
        )

    def fail(self, session_id: int, why: str, retry_in: float) -> None:
        """The current step failed: keep the step, say why, try again later."""
        now = time.time()
        self._db.execute(
            "UPDATE postrace SET failed = 1, detail = ?, attempts = attempts + 1,"
            " next_attempt_at = ?, updated_at = ? WHERE session_id = ?",
            (why[:500], now + retry_in, now, session_id),
        )


def read_progress(path: Path, *, limit: int = 20) -> list[Progress]:
    """The newest sessions' progress, newest first, read-only; [] without a file."""
    if not path.exists():
        return []
    db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM postrace ORDER BY session_id DESC LIMIT ?",
            (limit,),
        ).fetchall()
    except sqlite3.OperationalError:  # created, table not yet there
        return []
    finally:
        db.close()
    return [_progress(r) for r in rows]


_COLUMNS = (
    "session_id, session_key, car, step, failed, detail, finished_by, path,"
    " report_url, attempts, next_attempt_at, updated_at"
)


def _progress(row: tuple[object, ...]) -> Progress:
    (sid, key, car, step, failed, detail, by, path, url, attempts, due, updated) = row
    return Progress(
        int(str(sid)),
        str(key),
        str(car),
        Step(str(step)),
        bool(failed),
        str(detail),
        str(by),
        str(path),
        str(url),
        int(str(attempts)),
        float(str(due)),
        float(str(updated)),
    )
