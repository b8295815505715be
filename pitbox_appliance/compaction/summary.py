"""Laps, stints, events and session rows as Arrow tables, and the session's SessionAnalytics summary."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pitbox_appliance.storage.reader import (
    DriverRow,
    EventRow,
    LapRow,
    SessionRow,
    StintRow,
)

AVG_LAP_RULE = "mean and best of timed laps that are not pit laps"
FUEL_RULE = (
    "sum of FuelLevel decreases in the stint (refuelling ignored), from the source "
    "with the most frames showing fuel in that stint"
)


@dataclass
class SessionRows:
    """The relational rows of one session, as read from the appliance database."""

    race: SessionRow
    drivers: dict[int, DriverRow]
    stints: list[StintRow]
    laps: list[LapRow]
    events: list[EventRow]

    def driver(self, driver_id: int | None) -> DriverRow | None:
        return self.drivers.get(driver_id) if driver_id is not None else None

    def stint_number(self, stint_id: int | None) -> int | None:
        for stint in self.stints:
            if stint.id == stint_id:
                return stint.number
        return None


class StintFuel:
    """Fuel used per stint from telemetry: decreases of ``FuelLevel``, per source.

    Batches are buffered per source and processed ~64k frames at a time.
    """

    BUFFER_FRAMES = 65_536

    def __init__(self, starts: list[float]) -> None:
        self._starts = np.asarray(starts, dtype=np.float64)
        self._last: dict[str, float] = {}
        self._used: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        self._frames: dict[str, np.ndarray[Any, np.dtype[np.int64]]] = {}
        # per source: [times, fuel, times, fuel, ...]
        self._buffers: dict[str, list[np.ndarray[Any, np.dtype[np.float64]]]] = {}
        self._buffered: dict[str, int] = {}

    def __call__(self, source: str, frames: np.ndarray[Any, np.dtype[np.void]]) -> None:
        names = frames.dtype.names or ()
        if not len(self._starts) or "FuelLevel" not in names:
            return
        if "SessionTime" not in names:
            return
        buffer = self._buffers.setdefault(source, [])
        buffer.append(frames["SessionTime"].astype(np.float64))
        buffer.append(frames["FuelLevel"].astype(np.float64))
        self._buffered[source] = self._buffered.get(source, 0) + len(frames)
        if self._buffered[source] >= self.BUFFER_FRAMES:
            self._process(source)

    def finish(self) -> None:
        """Process what is still buffered (call once all telemetry has been fed)."""
        for source in list(self._buffers):
            self._process(source)

    def _process(self, source: str) -> None:
        batches = self._buffers.pop(source, [])
        self._buffered[source] = 0
        if not batches:
            return
        times = np.concatenate(batches[0::2])
        fuel = np.concatenate(batches[1::2])
        used = self._used.setdefault(source, np.zeros(len(self._starts)))
        seen = self._frames.setdefault(
            source, np.zeros(len(self._starts), dtype=np.int64)
        )
        idx = np.searchsorted(self._starts, times, side="right") - 1
        showing = (idx >= 0) & np.isfinite(fuel) & (fuel > 0)
        np.add.at(seen, idx[showing], 1)
        previous = self._last.get(source, math.nan)
        drops = -np.diff(np.concatenate(([previous], fuel)))
        with np.errstate(invalid="ignore"):
            keep = (idx >= 0) & np.isfinite(drops) & (drops > 0)
        np.add.at(used, idx[keep], drops[keep])
        finite = fuel[np.isfinite(fuel)]
        if len(finite):
            self._last[source] = float(finite[-1])

    def used(self, stint_index: int) -> float | None:
        """Litres used in the stint, or None when no source showed fuel in it."""
        best: tuple[int, float] | None = None
        for source, seen in self._frames.items():
            frames = int(seen[stint_index])
            if frames and (best is None or frames > best[0]):
                best = (frames, float(self._used[source][stint_index]))
        return None if best is None else best[1]


@dataclass
class StintSummary:
    """One stint as the manifest and ``stints.parquet`` describe it."""

    number: int
    driver_user_id: int | None
    driver_name: str | None
    team_name: str | None
    start_time: float
    end_time: float | None
    laps: int
    timed_laps: int
    avg_lap_time: float | None
    best_lap_time: float | None
    fuel_used: float | None
    lap_times: list[float] = field(default_factory=list)


def stint_summaries(rows: SessionRows, fuel: StintFuel) -> list[StintSummary]:
    """Per stint: driver, laps, average and best lap, fuel used (None where unknown)."""
    out = []
    for i, stint in enumerate(rows.stints):
        laps = [lap for lap in rows.laps if lap.stint_id == stint.id]
        clean = [
            lap.lap_time
            for lap in laps
            if lap.lap_time is not None and not lap.pit_lap and not lap.invalid
        ]
        driver = rows.driver(stint.driver_id)
        end = stint.end_time
        if end is None and i == len(rows.stints) - 1:
            end = rows.race.last_time  # the last stint runs to the end of the data
        out.append(
            StintSummary(
                number=stint.number,
                driver_user_id=driver.user_id if driver else None,
                driver_name=driver.user_name if driver else None,
                team_name=(driver.team_name or None) if driver else None,
                start_time=stint.start_time,
                end_time=end,
                laps=len(laps),
                timed_laps=len(clean),
                avg_lap_time=sum(clean) / len(clean) if clean else None,
                best_lap_time=min(clean) if clean else None,
                fuel_used=fuel.used(i),
                lap_times=clean,
            )
        )
    return out


def session_analytics(
    rows: SessionRows,
    stints: list[StintSummary],
    session_name: str,
    info: dict[str, Any],
) -> dict[str, Any]:
    """The seed's ``SessionAnalytics`` (§3.3) with what the data holds; null elsewhere."""
    race = rows.race
    weekend = info.get("WeekendInfo") if isinstance(info, dict) else None
    weekend = weekend if isinstance(weekend, dict) else {}
    track_id = weekend.get("TrackID")
    duration = (
        race.last_time - race.first_time
        if race.first_time is not None and race.last_time is not None
        else None
    )
    date = session_date(info)
    return {
        "sessionId": session_name,
        "trackId": str(track_id) if track_id not in (None, "") else None,
        "date": (
            int(dt.datetime.combine(date, dt.time(), dt.UTC).timestamp() * 1000)
            if date
            else None
        ),
        "duration": duration,
        "stints": [
            {
                "stint": s.number,
                "driverId": str(s.driver_user_id) if s.driver_user_id else None,
                "driverName": s.driver_name,
                "startTime": s.start_time,
                "endTime": s.end_time,
                "laps": s.laps,
                "timedLaps": s.timed_laps,
                "avgLapTime": s.avg_lap_time,
                "bestLapTime": s.best_lap_time,
                # Not computed by compaction (need definitions or data we lack):
                "consistency": None,
                "fuelUsed": s.fuel_used,
                "fuelEfficiency": None,
                "tireWear": None,
                "incidents": None,
                "mistakeHotspots": None,
            }
            for s in stints
        ],
        "overallPerformance": None,
        "rules": {"avgLapTime": AVG_LAP_RULE, "fuelUsed": FUEL_RULE},
    }


def session_date(info: dict[str, Any]) -> dt.date | None:
    """``WeekendInfo.WeekendOptions.Date`` of the session info, when the sim gave it."""
    weekend = info.get("WeekendInfo") if isinstance(info, dict) else None
    options = weekend.get("WeekendOptions") if isinstance(weekend, dict) else None
    value = options.get("Date") if isinstance(options, dict) else None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def team_of(rows: SessionRows) -> str | None:
    """The team name most of the session's drivers carry (None if none has one)."""
    ids = {s.driver_id for s in rows.stints} | {lap.driver_id for lap in rows.laps}
    names = Counter(
        d.team_name for i in ids if (d := rows.driver(i)) is not None and d.team_name
    )
    return names.most_common(1)[0][0] if names else None


# ---- tables --------------------------------------------------------------------
LAPS_SCHEMA = pa.schema(
    [
        ("lap_number", pa.int32()),
        ("stint", pa.int32()),
        ("driver_user_id", pa.int64()),
        ("driver_name", pa.string()),
        ("start_time", pa.float64()),
        ("end_time", pa.float64()),
        ("lap_time", pa.float64()),
        ("fuel_used", pa.float64()),
        ("pit_lap", pa.bool_()),
        ("max_speed", pa.float64()),
        ("input_smoothness", pa.float64()),
        ("input_aggression", pa.float64()),
        ("input_precision", pa.float64()),
        # Reset, towed or given no time by iRacing (lap_time null); fuel rose during
        # the lap (fuel_used null). Readers of older files take both as false.
        ("invalid", pa.bool_()),
        ("refuelled", pa.bool_()),
    ]
)
STINTS_SCHEMA = pa.schema(
    [
        ("stint", pa.int32()),
        ("driver_user_id", pa.int64()),
        ("driver_name", pa.string()),
        ("team_name", pa.string()),
        ("start_time", pa.float64()),
        ("end_time", pa.float64()),
        ("laps", pa.int32()),
        ("timed_laps", pa.int32()),
        ("avg_lap_time", pa.float64()),
        ("best_lap_time", pa.float64()),
        ("fuel_used", pa.float64()),
    ]
)
EVENTS_SCHEMA = pa.schema(
    [
        ("session_time", pa.float64()),
        ("kind", pa.string()),
        ("payload", pa.string()),
    ]
)
SESSION_SCHEMA = pa.schema(
    [
        ("session_key", pa.string()),
        ("car", pa.string()),
        ("track_name", pa.string()),
        ("track_length_km", pa.float64()),
        ("subsession_id", pa.int64()),
        ("team_name", pa.string()),
        ("first_time", pa.float64()),
        ("last_time", pa.float64()),
        ("duration", pa.float64()),
        ("laps", pa.int32()),
        ("best_lap_time", pa.float64()),
        ("stints", pa.int32()),
        ("drivers", pa.list_(pa.string())),
    ]
)


def laps_table(rows: SessionRows) -> pa.Table:
    data: dict[str, list[Any]] = {name: [] for name in LAPS_SCHEMA.names}
    for lap in rows.laps:
        driver = rows.driver(lap.driver_id)
        data["lap_number"].append(lap.lap_number)
        data["stint"].append(rows.stint_number(lap.stint_id))
        data["driver_user_id"].append(driver.user_id if driver else None)
        data["driver_name"].append(driver.user_name if driver else None)
        data["start_time"].append(lap.start_time)
        data["end_time"].append(lap.end_time)
        data["lap_time"].append(lap.lap_time)
        data["fuel_used"].append(lap.fuel_used)
        data["pit_lap"].append(bool(lap.pit_lap))
        data["max_speed"].append(lap.max_speed)
        data["input_smoothness"].append(lap.input_smoothness)
        data["input_aggression"].append(lap.input_aggression)
        data["input_precision"].append(lap.input_precision)
        data["invalid"].append(bool(lap.invalid))
        data["refuelled"].append(bool(lap.refuelled))
    return pa.table(data, schema=LAPS_SCHEMA)


def stints_table(stints: list[StintSummary]) -> pa.Table:
    return pa.table(
        {
            "stint": [s.number for s in stints],
            "driver_user_id": [s.driver_user_id for s in stints],
            "driver_name": [s.driver_name for s in stints],
            "team_name": [s.team_name for s in stints],
            "start_time": [s.start_time for s in stints],
            "end_time": [s.end_time for s in stints],
            "laps": [s.laps for s in stints],
            "timed_laps": [s.timed_laps for s in stints],
            "avg_lap_time": [s.avg_lap_time for s in stints],
            "best_lap_time": [s.best_lap_time for s in stints],
            "fuel_used": [s.fuel_used for s in stints],
        },
        schema=STINTS_SCHEMA,
    )


def events_table(rows: SessionRows, dumps: Any) -> pa.Table:
    return pa.table(
        {
            "session_time": [e.session_time for e in rows.events],
            "kind": [e.kind for e in rows.events],
            "payload": [dumps(e.payload) for e in rows.events],
        },
        schema=EVENTS_SCHEMA,
    )


def session_table(
    rows: SessionRows, stints: list[StintSummary], team: str | None
) -> pa.Table:
    race = rows.race
    timed = [
        lap.lap_time
        for lap in rows.laps
        if lap.lap_time is not None and not lap.pit_lap and not lap.invalid
    ]
    drivers = sorted({s.driver_name for s in stints if s.driver_name})
    duration = (
        race.last_time - race.first_time
        if race.first_time is not None and race.last_time is not None
        else None
    )
    return pa.table(
        {
            "session_key": [race.session_key],
            "car": [race.car],
            "track_name": [race.track or None],
            "track_length_km": [race.track_length_km or None],
            "subsession_id": [race.subsession_id or None],
            "team_name": [team],
            "first_time": [race.first_time],
            "last_time": [race.last_time],
            "duration": [duration],
            "laps": [len(rows.laps)],
            "best_lap_time": [min(timed) if timed else None],
            "stints": [len(stints)],
            "drivers": [drivers],
        },
        schema=SESSION_SCHEMA,
    )
