"""The single writer of the appliance database: batches rows and commits them together."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.orm import Session

from pitbox_appliance.storage.models import (
    ChannelSet,
    Driver,
    Event,
    Lap,
    RaceSession,
    Source,
    Stint,
    TelemetryChunk,
)
from pitbox_appliance.storage.reader import ResumeState, SessionReader

__all__ = ["ResumeState", "SessionWriter"]


class SessionWriter:
    """Owns the write transaction. Not thread-safe: one thread (the DB executor) uses it."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._db = Session(engine, expire_on_commit=False)
        self._session_ids: dict[str, int] = {}
        self._sessions: dict[int, RaceSession] = {}
        self._sources: dict[str, Source] = {}
        self._driver_ids: dict[tuple[int, str], int] = {}
        self._chunks: list[dict[str, Any]] = []

    def close(self) -> None:
        self._db.close()

    def commit(self) -> None:
        if self._chunks:
            self._db.execute(insert(TelemetryChunk), self._chunks)
            self._chunks = []
        self._db.commit()

    def rollback(self) -> None:
        self._chunks = []
        self._db.rollback()
        self._session_ids.clear()
        self._sessions.clear()
        self._sources.clear()
        self._driver_ids.clear()

    # ---- reads the writer needs -------------------------------------------------
    def source_seqs(self) -> dict[str, int]:
        """Highest stored sequence number per source (for de-duplication)."""
        return {s.id: s.last_seq for s in self._db.scalars(select(Source))}

    def resume_state(self, session_id: int) -> ResumeState | None:
        """Stored chunks since the last lap's start, the laps and the open stint.

        Read inside the write transaction (see :meth:`SessionReader.resume_state`).
        """
        return SessionReader(self._db).resume_state(session_id)

    def channel_sets(self) -> list[dict[str, Any]]:
        return [dict(c.definition) for c in self._db.scalars(select(ChannelSet))]

    # ---- writes -------------------------------------------------------------------
    def session_id(self, session_key: str, car: str = "") -> int:
        """Id of the session row for ``session_key``, creating it on first use."""
        sid = self._session_ids.get(session_key)
        if sid is not None:
            return sid
        row = self._db.scalar(
            select(RaceSession).where(RaceSession.session_key == session_key)
        )
        if row is None:
            row = RaceSession(session_key=session_key, car=car, created_at=time.time())
            self._db.add(row)
            self._db.flush()
        self._session_ids[session_key] = row.id
        self._sessions[row.id] = row
        return row.id

    def update_session(self, session_id: int, **fields: Any) -> None:
        row = self._db.get(RaceSession, session_id)
        assert row is not None
        for key, value in fields.items():
            setattr(row, key, value)

    def extend_session_time(self, session_id: int, first: float, last: float) -> None:
        row = self._sessions[session_id]
        if row.first_time is None or first < row.first_time:
            row.first_time = first
        if row.last_time is None or last > row.last_time:
            row.last_time = last

    def add_channel_set(
        self, session_id: int, dict_id: int, definition: dict[str, Any]
    ) -> None:
        exists = self._db.scalar(
            select(ChannelSet.id).where(
                ChannelSet.session_id == session_id, ChannelSet.dict_id == dict_id
            )
        )
        if exists is None:
            self._db.add(
                ChannelSet(
                    session_id=session_id, dict_id=dict_id, definition=definition
                )
            )

    def driver_id(self, user_id: int, user_name: str, team_name: str = "") -> int:
        key = (user_id, user_name)
        did = self._driver_ids.get(key)
        if did is not None:
            return did
        row = self._db.scalar(
            select(Driver).where(
                Driver.user_id == user_id, Driver.user_name == user_name
            )
        )
        if row is None:
            row = Driver(user_id=user_id, user_name=user_name, team_name=team_name)
            self._db.add(row)
            self._db.flush()
        self._driver_ids[key] = row.id
        return row.id

    def add_chunk(self, **row: Any) -> None:
        """Queue one telemetry chunk row; rows go in with one INSERT at commit."""
        self._chunks.append(row)

    def mark_source(self, source: str, seq: int, car: str = "") -> None:
        row = self._sources.get(source) or self._db.get(Source, source)
        if row is None:
            row = Source(id=source, last_seq=seq, car=car)
            self._db.add(row)
            self._sources[source] = row
        else:
            self._sources[source] = row
        if seq > row.last_seq:
            row.last_seq = seq

    def open_stint(self, session_id: int, driver_id: int | None, start: float) -> int:
        """Close the session's open stint (if any) and start the next one."""
        last = self._db.scalar(
            select(Stint)
            .where(Stint.session_id == session_id)
            .order_by(Stint.number.desc())
        )
        if last is not None and last.end_time is None:
            last.end_time = start
        stint = Stint(
            session_id=session_id,
            number=(last.number + 1) if last is not None else 1,
            driver_id=driver_id,
            start_time=start,
        )
        self._db.add(stint)
        self._db.flush()
        return stint.id

    def add_lap(self, lap: Lap) -> bool:
        """Store a lap unless the same lap (session, end time) is already stored."""
        exists = self._db.scalar(
            select(Lap.id).where(
                Lap.session_id == lap.session_id,
                Lap.end_time.between(lap.end_time - 1e-3, lap.end_time + 1e-3),
            )
        )
        if exists is not None:
            return False
        self._db.add(lap)
        return True

    def add_event(
        self, session_id: int, kind: str, session_time: float, payload: dict[str, Any]
    ) -> None:
        self._db.add(
            Event(
                session_id=session_id,
                kind=kind,
                session_time=session_time,
                payload=payload,
            )
        )
