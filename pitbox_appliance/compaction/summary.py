"""Laps, stints, events and session rows as Arrow tables, and the session's SessionAnalytics summary."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pitbox_appliance.analysis.corners import CornerMap
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
INCIDENT_KIND = "incident_detected"
MISTAKE_KIND = "mistake"
MIN_CONSISTENCY_LAPS = 3
MAX_HOTSPOTS = 5
# Where a score reaches 0 (docs/cloud.md): a robust lap-time spread of 2 % of the
# median lap; a fuel-per-lap spread of 10 %; 2 % of the tread per lap on the worst
# corner; one incident every 5 laps.
CONSISTENCY_ZERO = 0.02
FUEL_SPREAD_ZERO = 0.10
TREAD_PER_LAP_ZERO = 0.02
INCIDENTS_PER_LAP_ZERO = 0.2
RULES = {
    "avgLapTime": AVG_LAP_RULE,
    "fuelUsed": FUEL_RULE,
    "consistency": "1.4826 x median absolute deviation of the stint's timed laps (s)",
    "fuelPerLap": "mean fuel_used of the stint's green laps (not pit, invalid or "
    "refuelled)",
    "fuelEfficiency": "fuelPerLap / the session's median fuel per green lap "
    "(1 = typical, below 1 = more economical)",
    "tireWear": "fraction of tread used per corner: decreases of the mean of "
    "<corner>wear{L,M,R}",
    "incidents": "incident_detected events in the stint",
    "mistakeHotspots": "mistake events by corner (the zone holding their lap "
    "distance, as on the pit wall's map) and type; by detector section without a "
    "corner map",
    "overallPerformance": "scores 0-100, see docs/cloud.md; targetAchievement is "
    "their mean",
}


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


class StintDrops:
    """Per stint, the sum of decreases of a telemetry value (the mean of ``channels``).

    Rises (refuelling, fresh tyres) are ignored. Batches are buffered per source and
    processed ~64k frames at a time; per stint, the source with the most frames
    showing the value counts.
    """

    BUFFER_FRAMES = 65_536

    def __init__(self, starts: list[float], channels: tuple[str, ...]) -> None:
        self._starts = np.asarray(starts, dtype=np.float64)
        self._channels = channels
        self._last: dict[str, float] = {}
        self._used: dict[str, np.ndarray[Any, np.dtype[np.float64]]] = {}
        self._frames: dict[str, np.ndarray[Any, np.dtype[np.int64]]] = {}
        # per source: [times, values, times, values, ...]
        self._buffers: dict[str, list[np.ndarray[Any, np.dtype[np.float64]]]] = {}
        self._buffered: dict[str, int] = {}

    def __call__(self, source: str, frames: np.ndarray[Any, np.dtype[np.void]]) -> None:
        names = frames.dtype.names or ()
        present = [c for c in self._channels if c in names]
        if not len(self._starts) or not present or "SessionTime" not in names:
            return
        values = frames[present[0]].astype(np.float64)
        for name in present[1:]:
            values = values + frames[name].astype(np.float64)
        buffer = self._buffers.setdefault(source, [])
        buffer.append(frames["SessionTime"].astype(np.float64))
        buffer.append(values / len(present))
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
        value = np.concatenate(batches[1::2])
        used = self._used.setdefault(source, np.zeros(len(self._starts)))
        seen = self._frames.setdefault(
            source, np.zeros(len(self._starts), dtype=np.int64)
        )
        idx = np.searchsorted(self._starts, times, side="right") - 1
        showing = (idx >= 0) & np.isfinite(value) & (value > 0)
        np.add.at(seen, idx[showing], 1)
        previous = self._last.get(source, math.nan)
        drops = -np.diff(np.concatenate(([previous], value)))
        with np.errstate(invalid="ignore"):
            keep = (idx >= 0) & np.isfinite(drops) & (drops > 0)
        np.add.at(used, idx[keep], drops[keep])
        finite = value[np.isfinite(value)]
        if len(finite):
            self._last[source] = float(finite[-1])

    def used(self, stint_index: int) -> float | None:
        """The value's decreases in the stint, or None when no source showed it."""
        best: tuple[int, float] | None = None
        for source, seen in self._frames.items():
            frames = int(seen[stint_index])
            if frames and (best is None or frames > best[0]):
                best = (frames, float(self._used[source][stint_index]))
        return None if best is None else best[1]


class StintFuel(StintDrops):
    """Fuel used per stint from telemetry: decreases of ``FuelLevel``, per source."""

    def __init__(self, starts: list[float]) -> None:
        super().__init__(starts, ("FuelLevel",))


TYRE_CORNERS = {
    "frontLeft": "LF",
    "frontRight": "RF",
    "rearLeft": "LR",
    "rearRight": "RR",
}


class StintTyres:
    """Tread used per stint and corner: decreases of the mean of ``<corner>wear{L,M,R}``.

    iRacing's wear channels read 1.0 for a new tyre; live, the sim updates them only
    when the car is in its pit box, so a stint's wear shows at its stop.
    """

    def __init__(self, starts: list[float]) -> None:
        self._corners = {
            name: StintDrops(starts, tuple(f"{c}wear{t}" for t in ("L", "M", "R")))
            for name, c in TYRE_CORNERS.items()
        }

    def __call__(self, source: str, frames: np.ndarray[Any, np.dtype[np.void]]) -> None:
        for drops in self._corners.values():
            drops(source, frames)

    def finish(self) -> None:
        """Process what is still buffered."""
        for drops in self._corners.values():
            drops.finish()

    def used(self, stint_index: int) -> dict[str, float] | None:
        """Fraction of tread used per corner in the stint.

        None without wear channels, or when no corner's reading fell (a stint with
        no stop in iRacing: the sim had not measured the tyres, not "no wear").
        """
        out = {name: d.used(stint_index) for name, d in self._corners.items()}
        if any(v is None for v in out.values()) or not any(out.values()):
            return None
        return {name: float(v) for name, v in out.items() if v is not None}


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
    consistency: float | None = None
    fuel_per_lap: float | None = None
    lap_fuel: list[float] = field(default_factory=list)
    tyre_wear: dict[str, float] | None = None
    incidents: int = 0
    mistakes: list[dict[str, Any]] = field(default_factory=list)


def stint_summaries(
    rows: SessionRows, fuel: StintDrops, tyres: StintTyres | None = None
) -> list[StintSummary]:
    """Per stint: driver, laps, lap figures, fuel and tread used, incidents, mistakes."""
    out = []
    bounds = [s.start_time for s in rows.stints[1:]] + [math.inf]
    for i, stint in enumerate(rows.stints):
        laps = [lap for lap in rows.laps if lap.stint_id == stint.id]
        clean = [
            lap.lap_time
            for lap in laps
            if lap.lap_time is not None and not lap.pit_lap and not lap.invalid
        ]
        lap_fuel = [
            lap.fuel_used
            for lap in laps
            if lap.fuel_used is not None
            and lap.fuel_used > 0
            and not lap.pit_lap
            and not lap.invalid
            and not lap.refuelled
        ]
        driver = rows.driver(stint.driver_id)
        end = stint.end_time
        if end is None and i == len(rows.stints) - 1:
            end = rows.race.last_time  # the last stint runs to the end of the data
        events = [
            e
            for e in rows.events
            if stint.start_time <= e.session_time < bounds[i]
            or (i == 0 and e.session_time < stint.start_time)
        ]
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
                consistency=consistency(clean),
                fuel_per_lap=sum(lap_fuel) / len(lap_fuel) if lap_fuel else None,
                lap_fuel=lap_fuel,
                tyre_wear=tyres.used(i) if tyres is not None else None,
                incidents=sum(1 for e in events if e.kind == INCIDENT_KIND),
                mistakes=[e.payload for e in events if e.kind == MISTAKE_KIND],
            )
        )
    return out


def consistency(lap_times: list[float]) -> float | None:
    """1.4826 x the median absolute deviation of the lap times (s); None below 3 laps.

    A robust standard deviation: a yellow or traffic lap moves it little.
    """
    if len(lap_times) < MIN_CONSISTENCY_LAPS:
        return None
    times = np.asarray(lap_times, dtype=np.float64)
    return float(1.4826 * np.median(np.abs(times - np.median(times))))


def mistake_hotspots(
    mistakes: list[dict[str, Any]], corners: CornerMap | None = None
) -> list[dict[str, Any]]:
    """Mistakes grouped by corner (else detector section) and type, most frequent first.

    With the track's corner map a mistake counts for the corner whose zone holds its
    lap distance (the braking before a corner is that corner's), named as on the pit
    wall (``T3 Hairpin``); without one, by the detector's section (``S4``).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for m in mistakes:
        section, kind = m.get("section"), m.get("mistake")
        if not isinstance(kind, str):
            continue
        pct = m.get("lap_dist_pct")
        zone = (
            corners.zone_at(float(pct))
            if corners is not None and isinstance(pct, (int, float))
            else None
        )
        if zone is not None:
            groups.setdefault((zone.label, kind), []).append(m)
        elif isinstance(section, int):
            groups.setdefault((f"S{section + 1}", kind), []).append(m)
    spots: list[dict[str, Any]] = []
    for (place, kind), found in groups.items():
        pcts = [float(m["lap_dist_pct"]) for m in found if "lap_dist_pct" in m]
        severities = [float(m["severity"]) for m in found if "severity" in m]
        spots.append(
            {
                "trackSection": place,
                "lapDistPct": sum(pcts) / len(pcts) if pcts else None,
                "frequency": len(found),
                "severity": sum(severities) / len(severities) if severities else None,
                "type": kind,
            }
        )
    spots.sort(key=lambda h: (-int(h["frequency"]), -float(h["severity"] or 0.0)))
    return spots[:MAX_HOTSPOTS]


def overall_performance(stints: list[StintSummary]) -> dict[str, Any] | None:
    """The session's scores (docs/cloud.md "SessionAnalytics"); None without timed laps.

    Each score is 0-100 (100 best) or None where the data lacks it;
    ``targetAchievement`` is the mean of the scores that exist.
    """
    times = [t for s in stints for t in s.lap_times]
    if not times:
        return None
    best, median = min(times), float(np.median(times))
    pace = best / (sum(times) / len(times))
    spread = [
        (s.consistency, s.timed_laps) for s in stints if s.consistency is not None
    ]
    consistency_score = None
    if spread:
        sigma = sum(c * n for c, n in spread) / sum(n for _, n in spread)
        consistency_score = _score(sigma / (CONSISTENCY_ZERO * median))
    fuel = [f for s in stints for f in s.lap_fuel]
    fuel_score = None
    if len(fuel) >= MIN_CONSISTENCY_LAPS:
        values = np.asarray(fuel, dtype=np.float64)
        mad = 1.4826 * np.median(np.abs(values - np.median(values)))
        fuel_score = _score(float(mad / np.median(values)) / FUEL_SPREAD_ZERO)
    wear = [
        max(s.tyre_wear.values()) / s.laps
        for s in stints
        if s.tyre_wear is not None and s.laps
    ]
    tyre_score = _score(max(wear) / TREAD_PER_LAP_ZERO) if wear else None
    laps = sum(s.laps for s in stints)
    incidents = sum(s.incidents for s in stints)
    incident_score = _score(incidents / laps / INCIDENTS_PER_LAP_ZERO) if laps else None
    scores = [
        consistency_score,
        fuel_score,
        tyre_score,
        incident_score,
        100.0 * pace,
    ]
    known = [v for v in scores if v is not None]
    return {
        "targetAchievement": sum(known) / len(known),
        "paceRelativeToOptimal": pace,
        "consistencyScore": consistency_score,
        "fuelEfficiencyScore": fuel_score,
        "tireManagementScore": tyre_score,
        "incidentAvoidanceScore": incident_score,
    }


def _score(badness: float) -> float:
    """100 at 0, falling linearly to 0 at 1 and beyond."""
    return 100.0 * max(0.0, 1.0 - badness)


def session_analytics(
    rows: SessionRows,
    stints: list[StintSummary],
    session_name: str,
    info: dict[str, Any],
    corners: CornerMap | None = None,
) -> dict[str, Any]:
    """The seed's ``SessionAnalytics`` (§3.3); a figure the data cannot give is null.

    ``corners``: the track's corner map, which mistake hotspots are counted by.
    """
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
    all_fuel = [f for s in stints for f in s.lap_fuel]
    reference_fuel = float(np.median(all_fuel)) if all_fuel else None
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
                "consistency": s.consistency,
                "fuelUsed": s.fuel_used,
                "fuelPerLap": s.fuel_per_lap,
                "fuelEfficiency": (
                    s.fuel_per_lap / reference_fuel
                    if s.fuel_per_lap is not None and reference_fuel
                    else None
                ),
                "tireWear": s.tyre_wear,
                "incidents": s.incidents,
                "mistakeHotspots": mistake_hotspots(s.mistakes, corners),
            }
            for s in stints
        ],
        "overallPerformance": overall_performance(stints),
        "rules": RULES,
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
