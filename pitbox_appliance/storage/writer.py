"""The single writer of the appliance database: batches rows and commits them together."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Engine, Table, delete, func, insert, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, SessionTransaction

from pitbox_appliance.storage.models import (
    ChannelSet,
    DeadLetter,
    Driver,
    Event,
    Lap,
    RaceSession,
    Source,
    Stint,
    TelemetryChunk,
)
from pitbox_appliance.storage.reader import ResumeState, SessionReader

__all__ = ["ResumeState", "SessionWriter", "environmental"]

# The dead-letter table is bounded: a source sending nothing but bad messages (20 a
# second) must not fill the SD card. Beyond either bound a failed message is counted
# and acknowledged without being kept (docs/durability.md).
MAX_DEAD_LETTERS = 10_000
MAX_DEAD_LETTER_BYTES = 256 * 1024 * 1024
_INSERT_CHUNK = insert(cast(Table, TelemetryChunk.__table__))
_INSERT_EVENT = (
    f"INSERT INTO {Event.__tablename__} (session_id, kind, session_time, payload)"
    " VALUES (?, ?, ?, ?)"
)


def environmental(exc: BaseException) -> bool:
    """Whether ``exc`` is the machine's failure rather than one message's.

    Disk full, I/O error, a locked or damaged database file, no memory: nothing a
    message did, so the messages are held and the commit retried (never put aside).
    Every other failure (a constraint, a value SQLite cannot take, a bug met by one
    message's content) belongs to the message that caused it.
    """
    if isinstance(exc, sa_exc.OperationalError | OSError | MemoryError):
        return True
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, sqlite3.OperationalError | OSError | MemoryError):
        return True
    # "database disk image is malformed", "file is not a database": the bare class.
    return type(orig) is sqlite3.DatabaseError or type(exc) in (
        sa_exc.DatabaseError,
        sa_exc.InternalError,
    )


@dataclass(slots=True)
class _Scope:
    """One ``savepoint`` block: its SAVEPOINT once the block has written (else None)."""

    nested: SessionTransaction | None = None


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
        # Event rows (session, kind, time, payload as JSON text), also inserted at
        # commit: through the ORM each was a flush at its message's SAVEPOINT, ~1.5 ms.
        self._events: list[tuple[int, str, float, str]] = []
        # Written at commit, like the chunks: every message moves them, and a row
        # update per message would be flushed at every message's savepoint.
        self._seqs: dict[str, tuple[int, str]] = {}  # source → (seq, car)
        self._times: dict[int, tuple[float, float]] = {}  # session → (first, last)
        # (rows, payload bytes) of the dead-letter table; None: not read yet.
        self._dead: tuple[int, int] | None = None
        # The message being handled (``savepoint``), None between messages.
        self._scope: _Scope | None = None

    def close(self) -> None:
        self._db.close()

    def commit(self) -> None:
        self._write_deferred()
        self._insert_chunks()
        self._insert_events()
        self._db.commit()

    def rollback(self) -> None:
        self._chunks = []
        self._events = []
        self._seqs = {}
        self._times = {}
        self._db.rollback()
        self._forget_cached()

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """One message's writes: all of them, or none when the block raises.

        A SAVEPOINT inside the open transaction, so one message's failure leaves the
        rest of the batch to commit. Rows the block queued for the commit (telemetry
        chunks, events, sequence numbers, time spans) go with it; the cached rows are
        read again afterwards.

        The SAVEPOINT is opened at the block's first write to the database, not at its
        start: most messages write none (a telemetry batch only queues its chunk), and
        before its first write a message has nothing in the database to take back.
        Every method that writes opens it first (``_writing``); SQLAlchemy's
        nested-transaction bookkeeping was 15 % of ingest when every message paid it.
        """
        chunks, events = len(self._chunks), len(self._events)
        seqs, times = dict(self._seqs), dict(self._times)
        outer = self._scope
        if outer is not None:
            self._writing()  # the outer block's SAVEPOINT must come before this one
        scope = _Scope()
        self._scope = scope
        try:
            yield
            if scope.nested is not None:
                scope.nested.commit()
        except BaseException:
            if scope.nested is not None and scope.nested.is_active:
                scope.nested.rollback()
            del self._chunks[chunks:]
            del self._events[events:]
            self._seqs, self._times = seqs, times
            self._forget_cached()
            raise
        finally:
            self._scope = outer

    def _writing(self) -> None:
        """About to write to the database: open the message's SAVEPOINT if not yet."""
        scope = self._scope
        if scope is not None and scope.nested is None:
            self._begin()
            scope.nested = self._db.begin_nested()

    def flush_chunks(self) -> None:
        """Insert the queued telemetry chunks now (still uncommitted), so reads see them."""
        if self._chunks:
            self._writing()
            self._begin()
            self._insert_chunks()

    def _insert_chunks(self) -> None:
        """Insert the queued chunk rows with one Core ``executemany``.

        Not the ORM's bulk insert, which cost as much again (8 against 4.5 ms per
        500 rows of ~600 bytes): chunks are never read back as objects here.
        """
        if self._chunks:
            self._db.connection().execute(_INSERT_CHUNK, self._chunks)
            self._chunks = []

    def _insert_events(self) -> None:
        """Insert the queued event rows with one ``executemany``, in the order raised."""
        if self._events:
            self._db.connection().exec_driver_sql(_INSERT_EVENT, self._events)
            self._events = []

    def _begin(self) -> None:
        """Make sure a real transaction is open before a SAVEPOINT.

        Python's sqlite3 (before 3.12's ``autocommit``) emits BEGIN only before a
        write, and a SAVEPOINT outside a transaction starts one of its own whose
        RELEASE commits at once: the first message of a batch would then be committed
        before the batch, and a rollback (disk full) would keep it.
        """
        connection = self._db.connection()
        raw = connection.connection.dbapi_connection
        if raw is not None and not getattr(raw, "in_transaction", True):
            connection.exec_driver_sql("BEGIN")

    def _forget_cached(self) -> None:
        """Rows cached from the transaction may be gone: read them again when needed."""
        self._session_ids.clear()
        self._sessions.clear()
        self._sources.clear()
        self._driver_ids.clear()
        self._dead = None

    # ---- reads the writer needs -------------------------------------------------
    def source_seqs(self) -> dict[str, int]:
        """Highest stored sequence number per source (for de-duplication)."""
        return {s.id: s.last_seq for s in self._db.scalars(select(Source))}

    def stored_chain(
        self, source: str, first_seq: int, last_seq: int
    ) -> list[tuple[int, bytes]]:
        """Stored chunks of ``source`` in a seq range (a delta's base, rebuilt)."""
        return SessionReader(self._db).stored_chain(source, first_seq, last_seq)

    def resume_state(self, session_id: int) -> ResumeState | None:
        """Stored chunks since the last lap's start, the laps and the open stint.

        Read inside the write transaction (see :meth:`SessionReader.resume_state`).
        """
        return SessionReader(self._db).resume_state(session_id)

    def channel_sets(self) -> list[dict[str, Any]]:
        return [dict(c.definition) for c in self._db.scalars(select(ChannelSet))]

    # ---- writes -------------------------------------------------------------------
    def session_car(self, session_key: str) -> str | None:
        """The car of the stored session ``session_key`` (None: no such session yet)."""
        sid = self._session_ids.get(session_key)
        if sid is not None:
            return self._sessions[sid].car
        return self._db.scalar(
            select(RaceSession.car).where(RaceSession.session_key == session_key)
        )

    def session_id(self, session_key: str, car: str = "") -> int:
        """Id of the session row for ``session_key``, creating it on first use."""
        sid = self._session_ids.get(session_key)
        if sid is not None:
            return sid
        row = self._db.scalar(
            select(RaceSession).where(RaceSession.session_key == session_key)
        )
        if row is None:
            self._writing()
            row = RaceSession(session_key=session_key, car=car, created_at=time.time())
            self._db.add(row)
            self._db.flush()
        self._session_ids[session_key] = row.id
        self._sessions[row.id] = row
        return row.id

    def update_session(self, session_id: int, **fields: Any) -> None:
        self._writing()
        row = self._db.get(RaceSession, session_id)
        assert row is not None
        for key, value in fields.items():
            setattr(row, key, value)

    def extend_session_time(self, session_id: int, first: float, last: float) -> None:
        """Widen the session's stored time span (written at commit)."""
        known = self._times.get(session_id)
        if known is not None:
            first, last = min(first, known[0]), max(last, known[1])
        self._times[session_id] = (first, last)

    def add_channel_set(
        self, session_id: int, dict_id: int, definition: dict[str, Any]
    ) -> None:
        exists = self._db.scalar(
            select(ChannelSet.id).where(
                ChannelSet.session_id == session_id, ChannelSet.dict_id == dict_id
            )
        )
        if exists is None:
            self._writing()
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
            self._writing()
            row = Driver(user_id=user_id, user_name=user_name, team_name=team_name)
            self._db.add(row)
            self._db.flush()
        self._driver_ids[key] = row.id
        return row.id

    def add_chunk(self, **row: Any) -> None:
        """Queue one telemetry chunk row; rows go in with one INSERT at commit."""
        self._chunks.append(row)

    def mark_source(self, source: str, seq: int, car: str = "") -> None:
        """``seq`` of ``source`` is dealt with (written at commit)."""
        known = self._seqs.get(source)
        if known is None or seq > known[0]:
            self._seqs[source] = (seq, car)

    def _write_deferred(self) -> None:
        """Apply the sources' sequence numbers and the sessions' time spans."""
        for source, (seq, car) in self._seqs.items():
            row = self._sources.get(source) or self._db.get(Source, source)
            if row is None:
                row = Source(id=source, last_seq=seq, car=car)
                self._db.add(row)
            elif seq > row.last_seq:
                row.last_seq = seq
            self._sources[source] = row
        for session_id, (first, last) in self._times.items():
            session = self._sessions.get(session_id) or self._db.get(
                RaceSession, session_id
            )
            if session is None:
                continue
            if session.first_time is None or first < session.first_time:
                session.first_time = first
            if session.last_time is None or last > session.last_time:
                session.last_time = last
        self._seqs, self._times = {}, {}

    def open_stint(self, session_id: int, driver_id: int | None, start: float) -> int:
        """Close the session's open stint (if any) and start the next one."""
        self._writing()
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
        self._writing()
        self._db.add(lap)
        return True

    def add_event(
        self, session_id: int, kind: str, session_time: float, payload: dict[str, Any]
    ) -> None:
        """Queue one event row; events go in with one INSERT at commit, in order.

        The payload is made JSON text here (as the ORM's JSON type does, with
        ``json.dumps``), so one it cannot take fails the message that raised it.
        """
        self._events.append((session_id, kind, session_time, json.dumps(payload)))

    # ---- dead letters ---------------------------------------------------------------
    def add_dead_letter(
        self,
        *,
        topic: str,
        source: str | None,
        seq: int | None,
        kind: str,
        reason: str,
        detail: str,
        traceback: str,
        payload: bytes,
    ) -> int | None:
        """Keep a message that could not be ingested; its id, None when the table is full.

        Written in the open transaction: committed (and the message acknowledged)
        with the rest of the batch.
        """
        rows, size = self._dead_size()
        if rows >= MAX_DEAD_LETTERS or size + len(payload) > MAX_DEAD_LETTER_BYTES:
            return None
        self._writing()
        now = time.time()
        letter = DeadLetter(
            received_at=now,
            topic=topic,
            source=source,
            seq=seq,
            kind=kind,
            reason=reason[:128],
            detail=detail,
            traceback=traceback,
            payload=payload,
            attempts=1,
            last_attempt_at=now,
        )
        self._db.add(letter)
        self._db.flush()
        self._dead = (rows + 1, size + len(payload))
        return letter.id

    def dead_letter(self, letter_id: int) -> DeadLetter | None:
        """A kept message by id (inside the write transaction)."""
        return self._db.get(DeadLetter, letter_id)

    def dead_letter_ids(self) -> list[int]:
        """Every kept message's id, oldest first."""
        return list(self._db.scalars(select(DeadLetter.id).order_by(DeadLetter.id)))

    def retried_dead_letter(
        self, letter_id: int, reason: str, detail: str, traceback: str
    ) -> None:
        """A retry failed too: the letter stays, with the new reason and one more attempt."""
        letter = self._db.get(DeadLetter, letter_id)
        if letter is None:
            return
        self._writing()
        letter.reason = reason[:128]
        letter.detail = detail
        letter.traceback = traceback
        letter.attempts += 1
        letter.last_attempt_at = time.time()

    def delete_dead_letter(self, letter_id: int) -> None:
        """The message was ingested after all."""
        self._writing()
        self._db.execute(delete(DeadLetter).where(DeadLetter.id == letter_id))
        self._dead = None

    def _dead_size(self) -> tuple[int, int]:
        if self._dead is None:
            rows, size = self._db.execute(
                select(
                    func.count(DeadLetter.id),
                    func.coalesce(func.sum(func.length(DeadLetter.payload)), 0),
                )
            ).one()
            self._dead = (int(rows), int(size))
        return self._dead
