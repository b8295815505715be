"""What the crew records on the dashboard: handoff-checklist ticks and the team-message log.

The dashboard owns this small JSON file (``dashboard-crew.json`` beside the appliance
database by default), not the core's SQLite: the core is the only writer of its tables.
All tabs of the process share one :class:`CrewStore`; a tick on one tablet shows on the
others at their next refresh (they compare ``version``). Writes go to a worker thread and
replace the file atomically, so a power cut leaves the old or the new file, never half.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FILE_NAME = "dashboard-crew.json"
SCHEMA_VERSION = 1
#: Checklists and log entries kept (a 24 h race has a few dozen handoffs).
KEEP_CHECKLISTS = 200
KEEP_LOG = 200

#: The handoff checklist: (item key, what the crew checks).
HANDOFF_ITEMS: tuple[tuple[str, str], ...] = (
    ("fuel", "Fuel"),
    ("tyres", "Tyres"),
    ("brake_bias", "Brake bias"),
    ("shim", "Incoming driver's shim connected"),
)


@dataclass(frozen=True, slots=True)
class Checklist:
    """One handoff's checklist: which items are ticked (and when), and who drives next."""

    ticked: dict[str, float]
    next_driver: str = ""

    @property
    def complete(self) -> bool:
        return all(key in self.ticked for key, _label in HANDOFF_ITEMS)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A command the pit wall sent (camera switch or team message) and what came of it."""

    at: float
    car: str
    session_key: str
    kind: str
    text: str
    outcome: str
    detail: str
    #: Who sent it (the logged-in user; "" in files from before logins).
    user: str = ""


def handoff_key(car: str, session_key: str, stint: int) -> str:
    """The checklist for the handoff at the end of ``stint`` of that car's session."""
    return f"{car}/{session_key}/{stint}"


class CrewStore:
    """Checklist ticks and the message log, in memory and in a JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._checklists: dict[str, dict[str, Any]] = {}
        self._log: list[LogEntry] = []
        self._write_lock = asyncio.Lock()
        self._file_lock = threading.Lock()
        #: Changes with every tick or log entry; pages redraw when it moves.
        self.version = 0
        if path is not None:
            self._load(path)

    # ---- reading -------------------------------------------------------------------
    def checklist(self, key: str) -> Checklist:
        entry = self._checklists.get(key) or {}
        ticked = entry.get("ticked")
        return Checklist(
            ticked={
                str(k): float(v)
                for k, v in (ticked.items() if isinstance(ticked, dict) else ())
                if isinstance(v, int | float)
            },
            next_driver=str(entry.get("next_driver") or ""),
        )

    def log(self, car: str | None = None, limit: int = 20) -> tuple[LogEntry, ...]:
        """The newest entries first, of one car or all."""
        entries = [e for e in reversed(self._log) if car is None or e.car == car]
        return tuple(entries[:limit])

    # ---- writing -------------------------------------------------------------------
    async def tick(self, key: str, item: str, done: bool) -> None:
        """Tick or untick one checklist item."""
        entry = self._entry(key)
        ticked = entry.setdefault("ticked", {})
        if done:
            ticked[item] = time.time()
        else:
            ticked.pop(item, None)
        await self._changed()

    async def set_next_driver(self, key: str, driver: str) -> None:
        self._entry(key)["next_driver"] = driver
        await self._changed()

    async def add_log(self, entry: LogEntry) -> None:
        self._log.append(entry)
        del self._log[:-KEEP_LOG]
        await self._changed()

    # ---- helpers -------------------------------------------------------------------
    def _entry(self, key: str) -> dict[str, Any]:
        entry = self._checklists.get(key)
        if entry is None:
            entry = self._checklists[key] = {"created": time.time()}
            for old in list(self._checklists)[:-KEEP_CHECKLISTS]:
                del self._checklists[old]
        return entry

    async def _changed(self) -> None:
        self.version += 1
        if self.path is None:
            return
        snapshot = json.dumps(
            {
                "version": SCHEMA_VERSION,
                "checklists": self._checklists,
                "log": [asdict(e) for e in self._log],
            },
            indent=1,
        )
        async with self._write_lock:
            await asyncio.to_thread(self._write, snapshot)

    def _write(self, text: str) -> None:
        assert self.path is not None
        with self._file_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("w") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("ignoring unreadable crew file %s: %s", path, exc)
            return
        if not isinstance(data, dict) or data.get("version") != SCHEMA_VERSION:
            logger.warning("ignoring crew file %s of an unknown version", path)
            return
        checklists = data.get("checklists")
        if isinstance(checklists, dict):
            self._checklists = {
                str(k): v for k, v in checklists.items() if isinstance(v, dict)
            }
        for item in data.get("log") or ():
            try:
                self._log.append(LogEntry(**item))
            except TypeError:
                continue
