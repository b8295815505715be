"""The dashboard's read-only view of the appliance database: laps, stints, lap telemetry, track outline.

Pages never see SQL: they await a :class:`SessionData` method and get frozen dataclasses.
Every query runs in a small thread pool of its own (never on the UI loop), through a
read-only engine (``PRAGMA query_only``), and its answer is cached: the lap and stint
lists for a couple of seconds (the live session grows), a lap's telemetry and the track
outline for much longer (a stored lap never changes). Ten tabs asking for the same thing
at once cause one query.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import SQLAlchemyError

from driver_pc.protocol.codec import DecodeError
from driver_pc.protocol.data_dirs import track_outlines_dir
from driver_pc.protocol.session_info import SessionInfoError, parse_session_info
from pitbox_appliance.analysis.track_outline import (
    LapPath,
    LiveOutline,
    OutlineStore,
    lap_paths,
    outline_from_laps,
    pit_lane_path,
    track_key,
)
from pitbox_appliance.dashboard.lap_analysis import (
    FloatArray,
    LapTrace,
    TrackOutline,
    gps_outline,
    lap_trace_from_frames,
    live_outline,
    oval_outline,
    project_arrays,
    speed_on_grid,
    usable_gps,
    with_corners,
)
from pitbox_appliance.dashboard.mistakes import MistakeLog, parse_mistake
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.reader import (
    ChunkDecoder,
    LapRow,
    SessionReader,
    SessionRow,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: How long the lap/stint lists of a session are reused (the live session grows).
HISTORY_TTL_S = 2.0
#: How long a lap's telemetry, the outline and the session info are reused.
LONG_TTL_S = 600.0
#: A query that found nothing (yet) is asked again after this long.
MISS_TTL_S = 5.0
#: Cache entries kept (lap traces are the big ones: ~60 KB each).
MAX_CACHE_ENTRIES = 96
#: Channels a lap trace decodes; the rest of the stored batch is skipped.
TRACE_CHANNELS = frozenset(
    (
        "SessionTime",
        "LapDistPct",
        "Speed",
        "Throttle",
        "Brake",
        "Lat",
        "Lon",
        "OnPitRoad",
        "VelocityX",
        "VelocityY",
        "Yaw",
    )
)
#: Where the per-track outlines from live channels are kept: beside the database
#: (the appliance's data directory, ``driver_pc.protocol.data_dirs``), across sessions.
OUTLINE_DIR_NAME = track_outlines_dir(Path("db")).name
#: Clean laps of a session added to its track's outline per outline query (each is
#: one lap's telemetry decoded), and the count after which no more are added.
REFINE_LAPS_PER_QUERY = 4
OUTLINE_ENOUGH_LAPS = 30
#: How long a live-channel outline is reused while it is still being refined.
REFINE_TTL_S = 30.0
_STORE_LOCK = threading.Lock()  # one refinement of the cache files at a time
#: Channels the live-channel outline decodes.
OUTLINE_CHANNELS = frozenset(
    ("SessionTime", "LapDistPct", "Speed", "VelocityX", "VelocityY", "Yaw", "OnPitRoad")
)


# ---- what pages get ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A stored session of one team car."""

    id: int
    session_key: str
    car: str
    track: str
    track_length_m: float
    last_time: float | None


@dataclass(frozen=True, slots=True)
class LapInfo:
    """A completed lap as the laps page lists it."""

    id: int
    number: int
    stint: int | None
    driver: str
    start_time: float | None
    end_time: float
    lap_time: float | None
    fuel_used: float | None
    pit_lap: bool
    smoothness: float | None = None
    aggression: float | None = None
    precision: float | None = None
    invalid: bool = False  # reset, towed or given no time by iRacing
    refuelled: bool = False  # fuel rose during it: no fuel figure

    @property
    def green(self) -> bool:
        """A valid timed lap without a pit visit: what averages and the best lap count."""
        return (
            self.lap_time is not None
            and self.lap_time > 0
            and not self.pit_lap
            and not self.invalid
        )


@dataclass(frozen=True, slots=True)
class StintInfo:
    """One stint: a driver's run between pit visits or driver changes."""

    number: int
    driver: str
    start_time: float
    end_time: float | None
    laps: int
    green_laps: int
    avg_lap: float | None
    best_lap: float | None
    fuel_used: float | None
    invalid_laps: int = 0

    def drive_time(self, now: float | None) -> float:
        """Seconds in the car; an open stint runs until ``now`` (session time)."""
        end = self.end_time if self.end_time is not None else now
        return max(0.0, (end or self.start_time) - self.start_time)


@dataclass(frozen=True, slots=True)
class DriverTotal:
    """One driver's share of the session so far."""

    driver: str
    stints: int
    laps: int
    drive_time_s: float
    share: float
    best_lap: float | None


@dataclass(frozen=True, slots=True)
class SessionHistory:
    """A session with its laps (in the order driven) and stints."""

    session: SessionSummary
    laps: tuple[LapInfo, ...]
    stints: tuple[StintInfo, ...]

    @property
    def best(self) -> LapInfo | None:
        green = [lap for lap in self.laps if lap.green and lap.start_time is not None]
        return min(green, key=lambda lap: lap.lap_time or math.inf, default=None)

    @property
    def last(self) -> LapInfo | None:
        """The newest lap with a known start that is no reset or tow."""
        timed = [
            lap for lap in self.laps if lap.start_time is not None and not lap.invalid
        ]
        return timed[-1] if timed else None

    def lap(self, lap_id: int | None) -> LapInfo | None:
        return next((lap for lap in self.laps if lap.id == lap_id), None)

    def drivers(self) -> tuple[str, ...]:
        """Drivers in the order they first drove."""
        seen: dict[str, None] = {}
        for stint in self.stints:
            if stint.driver:
                seen.setdefault(stint.driver)
        return tuple(seen)

    def driver_totals(self, now: float | None = None) -> tuple[DriverTotal, ...]:
        """Drive time, laps and share per driver; ``now`` closes the open stint."""
        now = now if now is not None else self.session.last_time
        times: dict[str, list[StintInfo]] = {}
        for stint in self.stints:
            times.setdefault(stint.driver or "?", []).append(stint)
        total = sum(s.drive_time(now) for s in self.stints) or 0.0
        out = []
        for driver, stints in times.items():
            drive = sum(s.drive_time(now) for s in stints)
            bests = [s.best_lap for s in stints if s.best_lap is not None]
            out.append(
                DriverTotal(
                    driver=driver,
                    stints=len(stints),
                    laps=sum(s.laps for s in stints),
                    drive_time_s=drive,
                    share=drive / total if total > 0 else 0.0,
                    best_lap=min(bests) if bests else None,
                )
            )
        return tuple(out)


@dataclass(frozen=True, slots=True)
class SessionExtras:
    """What the stored session-info YAML adds: camera groups, car numbers, sectors."""

    camera_groups: tuple[tuple[int, str], ...] = ()
    car_numbers: tuple[tuple[str, str], ...] = ()
    own_car_number: str | None = None
    sector_starts: tuple[float, ...] = ()
    #: Our car's class (``CarClassID``), to tell a faster class from our own.
    own_class_id: int | None = None


# ---- the data layer -------------------------------------------------------------------
class SessionData:
    """Read-only, cached access to stored sessions; every query off the event loop."""

    def __init__(
        self,
        db_url: str,
        *,
        history_ttl_s: float = HISTORY_TTL_S,
        outline_dir: Path | None = None,
    ) -> None:
        self.db_url = db_url
        self.history_ttl_s = history_ttl_s
        self._path = _sqlite_path(db_url)
        #: The per-track outline cache (None: build in memory, keep nothing).
        self.outline_dir = outline_dir or (
            track_outlines_dir(self._path) if self._path is not None else None
        )
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="pitbox-dashboard-db"
        )
        self._cache: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._inflight: dict[Hashable, asyncio.Future[Any]] = {}
        #: Why the last query found no database (None when the last one worked).
        self.problem: str | None = None
        #: Queries actually run against the database (cache misses).
        self.queries = 0

    def close(self) -> None:
        """Stop the worker threads and close the engine's connections."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._engine is not None:
            self._engine.dispose()

    async def history(self, session_key: str) -> SessionHistory | None:
        """The stored session with that key, its laps and stints; None if not stored."""
        return await self._get(
            ("history", session_key),
            lambda reader: _history(reader, session_key),
            self.history_ttl_s,
        )

    async def latest_session_key(self) -> str | None:
        """The newest stored session (for pages opened while no car is live)."""
        return await self._get(
            ("latest",), SessionReader.latest_session_key, self.history_ttl_s
        )

    async def extras(self, session_key: str) -> SessionExtras:
        """Camera groups, car numbers and sectors from the stored session info."""
        found = await self._get(
            ("extras", session_key),
            lambda reader: _extras(reader, session_key),
            MISS_TTL_S,
        )
        return found if found is not None else SessionExtras()

    async def mistakes(self, session_key: str) -> MistakeLog | None:
        """The session's ``mistake`` events in time order; None if not stored."""
        return await self._get(
            ("mistakes", session_key),
            lambda reader: _mistakes(reader, session_key),
            self.history_ttl_s,
        )

    async def lap_trace(self, session_id: int, lap: LapInfo) -> LapTrace | None:
        """A lap's telemetry, decoded from the stored chunks; None without telemetry."""
        return await self._get(
            ("trace", session_id, lap.id, lap.end_time),
            lambda reader: _lap_trace(reader, session_id, lap),
            LONG_TTL_S,
        )

    async def outline(self, session_key: str) -> TrackOutline:
        """The track outline for a session.

        GPS of its best lap (or of one at the same track) when recorded; else the
        outline integrated from the live channels, cached per track and layout and
        refined with each clean lap; an oval only before any clean lap.
        """
        directory = self.outline_dir
        found = await self._get(
            ("outline", session_key),
            lambda reader: _outline(reader, session_key, directory),
            _outline_ttl,
        )
        return found if found is not None else oval_outline("no recorded lap yet")

    # ---- helpers --------------------------------------------------------------------
    async def _get(
        self,
        key: Hashable,
        query: Callable[[SessionReader], T | None],
        ttl_s: float | Callable[[T], float],
    ) -> T | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(key)
            value: T | None = hit[1]
            return value
        pending = self._inflight.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._executor, self._run, query)
            self._inflight[key] = pending
            pending.add_done_callback(lambda _f: self._inflight.pop(key, None))
        value = await asyncio.shield(pending)
        if key not in self._cache or self._cache[key][0] <= now:
            keep = MISS_TTL_S
            if value is not None:
                keep = float(ttl_s(value) if callable(ttl_s) else ttl_s)
            expires = time.monotonic() + keep
            self._cache[key] = (expires, value)
            while len(self._cache) > MAX_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return value

    def _run(self, query: Callable[[SessionReader], T | None]) -> T | None:
        """Worker thread: run one query, turning a missing or odd database into None."""
        engine = self._open()
        if engine is None:
            return None
        self.queries += 1
        try:
            value = query(SessionReader(engine))
        except SQLAlchemyError as exc:
            self.problem = _describe(exc)
            logger.warning("dashboard query failed: %s", self.problem)
            return None
        self.problem = None
        return value

    def _open(self) -> Engine | None:
        with self._engine_lock:
            if self._engine is not None:
                return self._engine
            if self._path is not None and not self._path.exists():
                # Connecting would create an empty file where the core expects its DB.
                self.problem = f"no database yet at {self._path}"
                return None
            self._engine = make_engine(self.db_url, readonly=True)
            return self._engine


# ---- queries (worker threads) -----------------------------------------------------------
def _history(reader: SessionReader, session_key: str) -> SessionHistory | None:
    with reader.snapshot() as db:
        race = db.session_by_key(session_key)
        if race is None:
            return None
        stint_rows = db.stints(race.id)
        lap_rows = db.laps(race.id)
    numbers = {stint.id: stint.number for stint in stint_rows}
    laps = tuple(
        LapInfo(
            id=lap.id,
            number=lap.lap_number,
            stint=numbers.get(lap.stint_id) if lap.stint_id is not None else None,
            driver=lap.driver_name or "",
            start_time=lap.start_time,
            end_time=lap.end_time,
            lap_time=lap.lap_time,
            fuel_used=lap.fuel_used,
            pit_lap=lap.pit_lap,
            smoothness=lap.input_smoothness,
            aggression=lap.input_aggression,
            precision=lap.input_precision,
            invalid=lap.invalid,
            refuelled=lap.refuelled,
        )
        for lap in lap_rows
    )
    stints = tuple(
        _stint_info(
            stint.number,
            stint.driver_name or "",
            stint.start_time,
            stint.end_time,
            laps,
        )
        for stint in stint_rows
    )
    summary = SessionSummary(
        id=race.id,
        session_key=race.session_key,
        car=race.car,
        track=race.track,
        track_length_m=race.track_length_km * 1000.0,
        last_time=race.last_time,
    )
    return SessionHistory(summary, laps, stints)


def _mistakes(reader: SessionReader, session_key: str) -> MistakeLog | None:
    with reader.snapshot() as db:
        race = db.session_by_key(session_key)
        if race is None:
            return None
        events = db.events(race.id, kind="mistake")
    parsed = [parse_mistake(e.payload, float(e.session_time)) for e in events]
    found = tuple(m for m in parsed if m is not None)
    return MistakeLog(found, skipped=len(parsed) - len(found))


def _stint_info(
    number: int,
    driver: str,
    start: float,
    end: float | None,
    laps: Sequence[LapInfo],
) -> StintInfo:
    mine = [lap for lap in laps if lap.stint == number]
    green = [lap.lap_time for lap in mine if lap.green and lap.lap_time is not None]
    fuel = [
        lap.fuel_used for lap in mine if lap.fuel_used is not None and lap.fuel_used > 0
    ]
    return StintInfo(
        number=number,
        driver=driver,
        start_time=start,
        end_time=end,
        laps=len(mine),
        green_laps=len(green),
        avg_lap=sum(green) / len(green) if green else None,
        best_lap=min(green) if green else None,
        fuel_used=sum(fuel) if fuel else None,
        invalid_laps=sum(lap.invalid for lap in mine),
    )


def _extras(reader: SessionReader, session_key: str) -> SessionExtras | None:
    race = reader.session_by_key(session_key)
    text = race.session_info if race is not None else None
    if not text:
        return None
    try:
        info = parse_session_info(text)
    except SessionInfoError:
        return None
    return session_extras(info)


def session_extras(info: dict[str, Any]) -> SessionExtras:
    """Camera groups, car numbers and sector starts from parsed session info."""
    groups = []
    for group in _dicts((info.get("CameraInfo") or {}).get("Groups")):
        try:
            groups.append((int(group["GroupNum"]), str(group.get("GroupName") or "")))
        except (KeyError, TypeError, ValueError):
            continue
    driver_info = info.get("DriverInfo") or {}
    own_idx = driver_info.get("DriverCarIdx") if isinstance(driver_info, dict) else None
    cars: dict[str, str] = {}
    own: str | None = None
    own_class: int | None = None
    for entry in _dicts(driver_info.get("Drivers") if driver_info else None):
        number = str(entry.get("CarNumber") or "").strip()
        if not number or entry.get("CarIsPaceCar") or entry.get("IsSpectator"):
            continue
        cars.setdefault(
            number, str(entry.get("TeamName") or entry.get("UserName") or "")
        )
        if entry.get("CarIdx") == own_idx:
            own = number
            class_id = entry.get("CarClassID")
            if isinstance(class_id, int) and not isinstance(class_id, bool):
                own_class = class_id
    sectors = []
    for sector in _dicts((info.get("SplitTimeInfo") or {}).get("Sectors")):
        try:
            sectors.append(float(sector["SectorStartPct"]))
        except (KeyError, TypeError, ValueError):
            continue
    return SessionExtras(
        camera_groups=tuple(sorted(groups)),
        car_numbers=tuple(cars.items()),
        own_car_number=own,
        sector_starts=tuple(sorted(s for s in sectors if 0 <= s < 1)),
        own_class_id=own_class,
    )


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _lap_trace(reader: SessionReader, session_id: int, lap: LapInfo) -> LapTrace | None:
    if lap.start_time is None:
        return None
    frames = _frames(reader, session_id, lap.start_time, lap.end_time)
    return lap_trace_from_frames(lap, frames)


def _frames(
    reader: SessionReader,
    session_id: int,
    start: float,
    end: float,
    channels: frozenset[str] = TRACE_CHANNELS,
) -> dict[str, FloatArray]:
    """The trace channels between two session times, from the best-covered source."""
    with reader.snapshot() as db:
        dictionaries = db.channel_sets(session_id)
        chunks = list(db.chunks(session_id, start=start, end=end))
    # Two driver PCs of one car can both stream a stretch: take the one that saw most.
    counts: dict[str, int] = {}
    for chunk in chunks:
        counts[chunk.source] = counts.get(chunk.source, 0) + chunk.frames
    if not counts:
        return {}
    chosen = max(counts, key=lambda s: counts[s])
    # A window that starts mid-chain rebuilds its first chunk's base from storage.
    decode = ChunkDecoder(dictionaries, channels, reader)
    columns: dict[str, list[FloatArray]] = {}
    for chunk in chunks:
        if chunk.source != chosen:
            continue
        try:
            batch = decode(chunk)
        except DecodeError as exc:
            logger.warning("session %s: skipping a chunk: %s", session_id, exc)
            continue
        for name in batch.frames.dtype.names or ():
            columns.setdefault(name, []).append(
                np.asarray(batch.frames[name], dtype=np.float64).reshape(-1)
            )
    out = {name: np.concatenate(parts) for name, parts in columns.items()}
    times = out.get("SessionTime")
    if times is None:
        return {}
    keep = (times >= start) & (times <= end)
    order = np.argsort(times[keep], kind="stable")
    return {name: values[keep][order] for name, values in out.items()}


def _outline(
    reader: SessionReader, session_key: str, directory: Path | None
) -> TrackOutline | None:
    with reader.snapshot() as db:
        race = db.session_by_key(session_key)
        if race is None:
            return None
        key = _track_key(race)
        candidates = db.fastest_laps(race.id, limit=2)
        if race.track:
            # A lap at the same track from an earlier session draws the map until
            # this session has a clean lap of its own.
            candidates += db.fastest_laps(track=race.track, other_than=race.id, limit=2)
        tried_telemetry = False
        for lap_row in candidates:
            lap = _lap_info(lap_row)
            assert lap.start_time is not None
            frames = _frames(db, lap_row.session_id, lap.start_time, lap.end_time)
            trace = lap_trace_from_frames(lap, frames)
            if trace is None:
                continue
            tried_telemetry = True
            if not trace.has_gps:
                break
            own = lap_row.session_id == race.id
            where = "" if own else " of an earlier session"
            note = f"GPS of lap {lap.number}{where} ({_secs(lap.lap_time)})"
            outline = replace(gps_outline(trace, note), track_key=key)
            outline = with_corners(outline, speed_on_grid(trace, outline.pct))
            return _with_pit_lane(db, race, outline)
        live = _live_outline(db, race, key, directory)
        if live is not None:
            return live
        reason = (
            "no GPS and no velocity/yaw in the recorded telemetry"
            if tried_telemetry
            else "no clean lap recorded yet"
        )
        return oval_outline(reason)


def _live_outline(
    db: SessionReader, race: SessionRow, key: str | None, directory: Path | None
) -> TrackOutline | None:
    """The outline from live channels: the track's cached one, refined with new laps."""
    store = OutlineStore(directory) if directory is not None and key else None
    with _STORE_LOCK:
        cached = store.load(key) if store is not None and key else None
        outline, used = cached if cached is not None else (None, frozenset[str]())
        if outline is None or outline.laps < OUTLINE_ENOUGH_LAPS:
            fresh = _new_lap_paths(db, race, used)
            if fresh and store is not None and key:
                outline = store.refine(key, fresh, label=race.track)
            elif fresh:
                outline = outline_from_laps(list(fresh.values()))
            used = used | frozenset(fresh)
        if outline is None:
            return None
        # The pit lane is the track's: traced once from a pit visit, then kept.
        lane = store.pit_lane(key) if store is not None and key else None
        if lane is None:
            lane = _live_pit_lane(db, race, outline)
            if lane is not None and store is not None and key:
                store.set_pit_lane(key, lane)
    return live_outline(outline, _live_note(outline, race, used), key, lane)


def _live_pit_lane(
    db: SessionReader, race: SessionRow, outline: LiveOutline
) -> FloatArray | None:
    """The first pit visit of the session, dead-reckoned and laid beside the outline."""
    pit_laps = db.laps(race.id, pit=True, limit=1)
    if not pit_laps:
        return None
    lap = pit_laps[0]
    # An out lap from the stall has no start: the two minutes before its end will do.
    start = lap.start_time if lap.start_time is not None else lap.end_time - 120.0
    frames = _frames(db, race.id, start, lap.end_time + 5.0, OUTLINE_CHANNELS)
    return pit_lane_path(frames, outline)


def _new_lap_paths(
    db: SessionReader, race: SessionRow, used: frozenset[str]
) -> dict[str, LapPath]:
    """The paths of this session's newest clean laps not yet in the cached outline."""
    clean = [
        lap
        for lap in db.laps(race.id)
        if lap.start_time is not None
        and lap.lap_time is not None
        and lap.lap_time > 0
        and not lap.pit_lap
        and not lap.invalid
        and _lap_id(race, lap) not in used
    ]
    out: dict[str, LapPath] = {}
    for lap in clean[-REFINE_LAPS_PER_QUERY:]:
        assert lap.start_time is not None
        # A little either side, so both line crossings are inside the window.
        frames = _frames(
            db, race.id, lap.start_time - 0.5, lap.end_time + 0.5, OUTLINE_CHANNELS
        )
        found = lap_paths(frames)
        if len(found) == 1:
            out[_lap_id(race, lap)] = found[0]
    return out


def _live_note(outline: LiveOutline, race: SessionRow, used: frozenset[str]) -> str:
    laps = "1 clean lap" if outline.laps == 1 else f"{outline.laps} clean laps"
    mine = any(u.startswith(f"{race.session_key}:") for u in used)
    where = "" if mine or outline.laps == 0 else ", kept from this track"
    return f"from live channels (no GPS): speed and yaw of {laps}{where}"


def _lap_id(race: SessionRow, lap: LapRow) -> str:
    return f"{race.session_key}:{lap.lap_number}"


def _track_key(race: SessionRow) -> str | None:
    """The track and layout from the session info's WeekendInfo (else the track name)."""
    weekend: dict[str, Any] = {}
    if race.session_info:
        try:
            info = parse_session_info(race.session_info)
        except SessionInfoError:
            info = {}
        found = info.get("WeekendInfo")
        weekend = found if isinstance(found, dict) else {}
    return track_key(weekend, fallback=race.track)


def _outline_ttl(outline: TrackOutline) -> float:
    """An oval is asked again soon (a clean lap may come); a refining outline now and then."""
    if outline.kind == "oval":
        return MISS_TTL_S
    if outline.kind == "live":
        return REFINE_TTL_S
    return LONG_TTL_S


def _with_pit_lane(
    reader: SessionReader, race: SessionRow, outline: TrackOutline
) -> TrackOutline:
    """Add the pit lane, traced from the first pit visit's GPS, to a GPS outline."""
    pit_laps = reader.laps(race.id, pit=True, limit=2)
    if not pit_laps or outline.origin is None:
        return outline
    start = pit_laps[0].start_time or pit_laps[0].end_time - 600.0
    frames = _frames(reader, race.id, start, pit_laps[-1].end_time)
    lat, lon, pit = frames.get("Lat"), frames.get("Lon"), frames.get("OnPitRoad")
    if lat is None or lon is None or pit is None or not usable_gps(lat, lon):
        return outline
    on = pit > 0.5
    if on.sum() < 5:
        return outline
    xs, ys = project_arrays(lat[on], lon[on], outline.origin)
    step = max(1, len(xs) // 150)
    lane = tuple(
        (round(float(x), 1), round(float(y), 1))
        for x, y in zip(xs[::step], ys[::step], strict=True)
    )
    return replace(outline, pit_lane=lane)


def _lap_info(lap: LapRow) -> LapInfo:
    return LapInfo(
        id=lap.id,
        number=lap.lap_number,
        stint=None,
        driver="",
        start_time=lap.start_time,
        end_time=lap.end_time,
        lap_time=lap.lap_time,
        fuel_used=lap.fuel_used,
        pit_lap=lap.pit_lap,
        invalid=lap.invalid,
        refuelled=lap.refuelled,
    )


# ---- geometry ---------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path | None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return None
    return Path(database)


def _describe(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    if "no such table" in text:
        return "the database has no PitBox tables yet"
    return f"database not readable: {text.splitlines()[0][:160]}"


def _secs(value: float | None) -> str:
    return "untimed" if value is None else f"{value:.3f} s"
