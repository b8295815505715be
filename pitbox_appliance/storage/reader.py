"""Reading stored sessions: sessions, laps, stints, drivers, events and telemetry chunks.

Every consumer of stored data (the dashboard, the API, ``pitbox laps``, compaction and
the writer's resume after a restart) reads through :class:`SessionReader`. It answers
with frozen row types, not ORM objects, and holds no state of its own beyond its bind:

* on an :class:`~sqlalchemy.Engine` (read-only ones included:
  ``make_engine(url, readonly=True)``) each call runs in a short session of its own;
  :meth:`SessionReader.snapshot` gives one session for a group of calls;
* on an ORM :class:`~sqlalchemy.orm.Session` (the writer's) calls run inside it, so
  they see what that session has flushed but not committed.

:class:`ChunkDecoder` turns stored chunks into telemetry batches through the wire
codec, with the channel sets the reader found in storage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import zstandard
from sqlalchemy import Engine, Select, case, func, select, union
from sqlalchemy.orm import Session

from driver_pc.protocol.chains import ChainBook
from driver_pc.protocol.codec import decompress_body
from driver_pc.protocol.messages import ChannelDictionary, TelemetryBatch
from pitbox_appliance.storage.models import (
    ChannelSet,
    Driver,
    Event,
    Lap,
    RaceSession,
    Stint,
    TelemetryChunk,
)

logger = logging.getLogger(__name__)

#: Never replay more than this much telemetry when a restarted core resumes a session.
RESUME_WINDOW_S = 30 * 60
#: Laps handed to a resumed session (fuel history, live lap list).
RESUME_LAPS = 50
#: Chunks fetched from SQLite at a time while streaming a session's telemetry.
CHUNKS_PER_FETCH = 512


# ---- rows -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionRow:
    """A stored session of one team car (the ``sessions`` table)."""

    id: int
    session_key: str
    car: str
    track: str
    track_length_km: float
    subsession_id: int
    created_at: float
    first_time: float | None
    last_time: float | None
    session_info: str


@dataclass(frozen=True, slots=True)
class DriverRow:
    """A driver as the sim identifies them."""

    id: int
    user_id: int
    user_name: str
    team_name: str


@dataclass(frozen=True, slots=True)
class LapRow:
    """A stored lap with the name of its driver (None without a known driver).

    ``invalid``: reset, towed or given no time by iRacing (``lap_time`` None);
    ``refuelled``: fuel rose during it (``fuel_used`` None).
    """

    id: int
    session_id: int
    stint_id: int | None
    driver_id: int | None
    driver_name: str | None
    lap_number: int
    start_time: float | None
    end_time: float
    lap_time: float | None
    fuel_used: float | None
    pit_lap: bool
    max_speed: float | None
    input_smoothness: float | None
    input_aggression: float | None
    input_precision: float | None
    invalid: bool = False
    refuelled: bool = False


@dataclass(frozen=True, slots=True)
class StintRow:
    """A stored stint with its driver's name and how many laps point at it."""

    id: int
    session_id: int
    number: int
    driver_id: int | None
    driver_name: str | None
    start_time: float
    end_time: float | None
    lap_count: int


@dataclass(frozen=True, slots=True)
class EventRow:
    """A stored event about a session."""

    id: int
    session_id: int
    kind: str
    session_time: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """One stored telemetry chunk: a compressed columnar batch as the wire codec wrote it."""

    source: str
    seq: int
    dict_id: int
    start_time: float
    end_time: float
    frames: int
    data: bytes


@dataclass(frozen=True, slots=True)
class LapTotals:
    """A session's lap count, best lap and drivers (in the order they first drove a lap)."""

    count: int
    best_lap_time: float | None
    drivers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What the writer has stored of a session, for a core that restarted."""

    chunks: list[StoredChunk]
    laps: list[Lap]
    stint_id: int | None
    stint_number: int
    stint_start: float  # SessionTime the open stint began (-inf: no stint yet)
    driver_id: int | None
    driver_name: str


class MissingChannelSetError(LookupError):
    """A session's chunks use a channel dictionary that no session has stored."""


# ---- the reader -------------------------------------------------------------------------
class SessionReader:
    """Reads stored sessions; see the module docstring for what ``bind`` changes."""

    def __init__(self, bind: Engine | Session) -> None:
        self._bind = bind

    @contextmanager
    def snapshot(self) -> Iterator[SessionReader]:
        """A reader whose calls all run in one ORM session (one connection)."""
        if isinstance(self._bind, Session):
            yield self
            return
        with Session(self._bind) as db:
            yield SessionReader(db)

    # ---- sessions ---------------------------------------------------------------------
    def sessions(self, *, limit: int | None = None) -> list[SessionRow]:
        """Stored sessions, newest first (the ``limit`` newest if given)."""
        query = select(RaceSession).order_by(RaceSession.id.desc()).limit(limit)
        with self._db() as db:
            return [_session_row(r) for r in db.scalars(query)]

    def latest_session_key(self) -> str | None:
        """The key of the newest stored session, or None when none is stored."""
        query = select(RaceSession.session_key).order_by(RaceSession.id.desc())
        with self._db() as db:
            return db.scalar(query.limit(1))

    def session(self, session_id: int) -> SessionRow | None:
        """The session with that id, or None."""
        with self._db() as db:
            row = db.get(RaceSession, session_id)
            return _session_row(row) if row is not None else None

    def session_by_key(self, session_key: str) -> SessionRow | None:
        """The session with that shim session key, or None."""
        query = select(RaceSession).where(RaceSession.session_key == session_key)
        with self._db() as db:
            row = db.scalar(query)
            return _session_row(row) if row is not None else None

    # ---- laps, stints, drivers, events --------------------------------------------------
    def laps(
        self,
        session_id: int | None = None,
        *,
        pit: bool | None = None,
        limit: int | None = None,
    ) -> list[LapRow]:
        """Laps in the order driven (of every session, session by session, if None).

        ``pit`` keeps only pit laps (True) or only the others (False).
        """
        query = _laps_query().order_by(Lap.session_id, Lap.end_time).limit(limit)
        if session_id is not None:
            query = query.where(Lap.session_id == session_id)
        if pit is not None:
            query = query.where(Lap.pit_lap.is_(pit))
        return self._laps(query)

    def fastest_laps(
        self,
        session_id: int | None = None,
        *,
        track: str | None = None,
        other_than: int | None = None,
        limit: int = 2,
    ) -> list[LapRow]:
        """Valid timed laps with a known start and no pit visit, fastest first.

        Of one session, or of every session at ``track`` (except ``other_than``).
        """
        query = _laps_query().where(
            Lap.lap_time.is_not(None),
            Lap.start_time.is_not(None),
            Lap.pit_lap.is_(False),
            Lap.invalid.is_(False),
        )
        if session_id is not None:
            query = query.where(Lap.session_id == session_id)
        if track is not None:
            query = query.join(RaceSession, Lap.session_id == RaceSession.id).where(
                RaceSession.track == track
            )
        if other_than is not None:
            query = query.where(Lap.session_id != other_than)
        return self._laps(query.order_by(Lap.lap_time).limit(limit))

    def lap_totals(self, session_id: int) -> LapTotals:
        """How many laps the session has, its best valid lap time and who drove them."""
        valid_time = case((Lap.invalid.is_(False), Lap.lap_time))
        with self._db() as db:
            count, best = db.execute(
                select(func.count(Lap.id), func.min(valid_time)).where(
                    Lap.session_id == session_id
                )
            ).one()
            drivers = db.scalars(
                select(Driver.user_name)
                .join(Lap, Lap.driver_id == Driver.id)
                .where(Lap.session_id == session_id)
                .group_by(Driver.id, Driver.user_name)
                .order_by(func.min(Lap.end_time))
            ).all()
        return LapTotals(int(count), best, tuple(drivers))

    def stints(self, session_id: int) -> list[StintRow]:
        """The session's stints in order, with driver names and lap counts."""
        query = (
            select(Stint, Driver.user_name, func.count(Lap.id))
            .outerjoin(Driver, Stint.driver_id == Driver.id)
            # Laps of a stint belong to its session: the session's index finds them.
            .outerjoin(
                Lap, (Lap.stint_id == Stint.id) & (Lap.session_id == Stint.session_id)
            )
            .where(Stint.session_id == session_id)
            .group_by(Stint.id, Driver.user_name)
            .order_by(Stint.number)
        )
        with self._db() as db:
            return [
                StintRow(
                    id=stint.id,
                    session_id=stint.session_id,
                    number=stint.number,
                    driver_id=stint.driver_id,
                    driver_name=name,
                    start_time=stint.start_time,
                    end_time=stint.end_time,
                    lap_count=int(count),
                )
                for stint, name, count in db.execute(query)
            ]

    def drivers(self, session_id: int) -> dict[int, DriverRow]:
        """Every driver of a stint or a lap of the session, by driver id."""
        ids = union(
            select(Stint.driver_id).where(Stint.session_id == session_id),
            select(Lap.driver_id).where(Lap.session_id == session_id),
        )
        with self._db() as db:
            return {
                d.id: DriverRow(d.id, d.user_id, d.user_name, d.team_name)
                for d in db.scalars(select(Driver).where(Driver.id.in_(ids)))
            }

    def events(self, session_id: int, kind: str | None = None) -> list[EventRow]:
        """The session's events (of one kind if given) in time order."""
        query = select(Event).where(Event.session_id == session_id)
        if kind is not None:
            query = query.where(Event.kind == kind)
        with self._db() as db:
            return [
                EventRow(e.id, e.session_id, e.kind, e.session_time, e.payload)
                for e in db.scalars(query.order_by(Event.session_time, Event.id))
            ]

    # ---- telemetry -----------------------------------------------------------------------
    def channel_sets(self, session_id: int) -> dict[int, ChannelDictionary]:
        """The channel dictionaries stored with the session, by dict id.

        An unreadable definition is logged and left out (its chunks will not decode).
        """
        query = select(ChannelSet.dict_id, ChannelSet.definition).where(
            ChannelSet.session_id == session_id
        )
        out: dict[int, ChannelDictionary] = {}
        with self._db() as db:
            rows = db.execute(query).all()
        for dict_id, definition in rows:
            try:
                out[dict_id] = ChannelDictionary.from_json(dict(definition))
            except (TypeError, ValueError):
                logger.warning(
                    "session %s: unreadable channel set %s", session_id, dict_id
                )
        return out

    def chunk_channel_sets(self, session_id: int) -> dict[int, ChannelDictionary]:
        """A dictionary for every dict id the session's chunks use, by dict id.

        The session's own definition wins; otherwise the same id stored with another
        session (the lowest row). Raises :class:`MissingChannelSetError` if none has it.
        """
        with self._db() as db:
            used = sorted(
                db.scalars(
                    select(TelemetryChunk.dict_id)
                    .where(TelemetryChunk.session_id == session_id)
                    .distinct()
                )
            )
            rows = db.execute(
                select(ChannelSet.dict_id, ChannelSet.definition)
                .where(ChannelSet.dict_id.in_(used))
                .order_by(
                    ChannelSet.dict_id,
                    ChannelSet.session_id != session_id,
                    ChannelSet.id,
                )
            ).all()
        found: dict[int, dict[str, Any]] = {}
        for dict_id, definition in rows:
            found.setdefault(dict_id, dict(definition))
        out: dict[int, ChannelDictionary] = {}
        for dict_id in used:
            if dict_id not in found:
                raise MissingChannelSetError(
                    f"session {session_id}: no channel dictionary {dict_id:#010x}"
                )
            out[dict_id] = ChannelDictionary.from_json(found[dict_id])
        return out

    def chunks(
        self,
        session_id: int,
        *,
        start: float | None = None,
        end: float | None = None,
        source: str | None = None,
    ) -> Iterator[StoredChunk]:
        """The session's chunks overlapping ``[start, end]``, in time order.

        Ordered by start time, then source and sequence number; streamed from SQLite
        a few hundred at a time, so a whole session never sits in memory.
        """
        query = select(
            TelemetryChunk.source,
            TelemetryChunk.seq,
            TelemetryChunk.dict_id,
            TelemetryChunk.start_time,
            TelemetryChunk.end_time,
            TelemetryChunk.frames,
            TelemetryChunk.data,
        ).where(TelemetryChunk.session_id == session_id)
        if start is not None:
            query = query.where(TelemetryChunk.end_time >= start)
        if end is not None:
            query = query.where(TelemetryChunk.start_time <= end)
        if source is not None:
            query = query.where(TelemetryChunk.source == source)
        query = query.order_by(
            TelemetryChunk.start_time, TelemetryChunk.source, TelemetryChunk.seq
        ).execution_options(yield_per=CHUNKS_PER_FETCH)
        with self._db() as db:
            for row in db.execute(query):
                yield StoredChunk(
                    row.source,
                    row.seq,
                    row.dict_id,
                    row.start_time,
                    row.end_time,
                    row.frames,
                    bytes(row.data),
                )

    def stored_chain(
        self, source: str, first_seq: int, last_seq: int
    ) -> list[tuple[int, bytes]]:
        """``source``'s stored chunks numbered ``first_seq``..``last_seq``, by number.

        What a delta-chained batch needs to rebuild its base: from its keyframe on.
        """
        query = (
            select(TelemetryChunk.seq, TelemetryChunk.data)
            .where(
                TelemetryChunk.source == source,
                TelemetryChunk.seq >= first_seq,
                TelemetryChunk.seq <= last_seq,
            )
            .order_by(TelemetryChunk.seq)
        )
        with self._db() as db:
            return [(row.seq, bytes(row.data)) for row in db.execute(query)]

    def last_chunk_end(self, session_id: int) -> float | None:
        """Session time where the session's newest stored telemetry ends."""
        with self._db() as db:
            return db.scalar(
                select(TelemetryChunk.end_time)
                .where(TelemetryChunk.session_id == session_id)
                .order_by(TelemetryChunk.end_time.desc())
                .limit(1)
            )

    # ---- resume ----------------------------------------------------------------------------
    def resume_state(self, session_id: int) -> ResumeState | None:
        """Stored chunks since the last lap's start, the laps and the open stint.

        None when the session has no telemetry stored. Laps are the ORM rows of the
        bound session (the writer's, when it resumes).
        """
        with self.snapshot() as reader, reader._db() as db:
            laps = list(
                db.scalars(
                    select(Lap)
                    .where(Lap.session_id == session_id)
                    .order_by(Lap.end_time)
                )
            )
            last_chunk = reader.last_chunk_end(session_id)
            if last_chunk is None:
                return None
            since = last_chunk - RESUME_WINDOW_S
            if laps:
                last = laps[-1]
                start = (
                    last.start_time if last.start_time is not None else last.end_time
                )
                since = max(since, start - 1.0)
            chunks = list(reader.chunks(session_id, start=since))
            stint = db.scalar(
                select(Stint)
                .where(Stint.session_id == session_id)
                .order_by(Stint.number.desc())
            )
            driver = (
                db.get(Driver, stint.driver_id) if stint and stint.driver_id else None
            )
            return ResumeState(
                chunks=chunks,
                laps=laps[-RESUME_LAPS:],
                stint_id=stint.id if stint else None,
                stint_number=stint.number if stint else 0,
                stint_start=stint.start_time if stint else float("-inf"),
                driver_id=stint.driver_id if stint else None,
                driver_name=driver.user_name if driver else "",
            )

    # ---- helpers ---------------------------------------------------------------------------
    @contextmanager
    def _db(self) -> Iterator[Session]:
        if isinstance(self._bind, Session):
            yield self._bind
        else:
            with Session(self._bind) as db:
                yield db

    def _laps(self, query: Select[Lap, str]) -> list[LapRow]:
        with self._db() as db:
            return [_lap_row(lap, name) for lap, name in db.execute(query)]


class ChunkDecoder:
    """Stored chunks → telemetry batches through the wire codec's batch format.

    ``channels`` limits the decoded columns (the rest are still length-checked).
    Chunks of either body version decode; a delta-chained chunk builds on the one
    before it of its source, or, when that was not among the chunks given (a time
    window that starts mid-chain), on its base rebuilt from ``reader``'s storage.
    A chunk that does not decompress or decode raises :class:`DecodeError`.
    """

    def __init__(
        self,
        dictionaries: Mapping[int, ChannelDictionary],
        channels: frozenset[str] | None = None,
        reader: SessionReader | None = None,
    ) -> None:
        self._dictionaries = dict(dictionaries)
        self._channels = channels
        self._decompressor = zstandard.ZstdDecompressor()
        self._chains = ChainBook(reader.stored_chain if reader is not None else None)

    def __call__(self, chunk: StoredChunk) -> TelemetryBatch:
        """One chunk's batch."""
        body = decompress_body(self._decompressor, chunk.data)
        batch, state, _base = self._chains.decode(
            chunk.source, chunk.seq, body, self._dictionaries, self._channels
        )
        if state is not None:
            self._chains.remember(chunk.source, state)
        return batch

    def batches(
        self, chunks: Iterable[StoredChunk]
    ) -> Iterator[tuple[StoredChunk, TelemetryBatch]]:
        """Each chunk with its batch, in the order given."""
        for chunk in chunks:
            yield chunk, self(chunk)


def _laps_query() -> Select[Lap, str]:
    return select(Lap, Driver.user_name).outerjoin(Driver, Lap.driver_id == Driver.id)


def _lap_row(lap: Lap, driver_name: str | None) -> LapRow:
    return LapRow(
        id=lap.id,
        session_id=lap.session_id,
        stint_id=lap.stint_id,
        driver_id=lap.driver_id,
        driver_name=driver_name,
        lap_number=lap.lap_number,
        start_time=lap.start_time,
        end_time=lap.end_time,
        lap_time=lap.lap_time,
        fuel_used=lap.fuel_used,
        pit_lap=lap.pit_lap,
        max_speed=lap.max_speed,
        input_smoothness=lap.input_smoothness,
        input_aggression=lap.input_aggression,
        input_precision=lap.input_precision,
        invalid=bool(lap.invalid),
        refuelled=bool(lap.refuelled),
    )


def _session_row(race: RaceSession) -> SessionRow:
    return SessionRow(
        id=race.id,
        session_key=race.session_key,
        car=race.car,
        track=race.track,
        track_length_km=race.track_length_km,
        subsession_id=race.subsession_id,
        created_at=race.created_at,
        first_time=race.first_time,
        last_time=race.last_time,
        session_info=race.session_info,
    )
