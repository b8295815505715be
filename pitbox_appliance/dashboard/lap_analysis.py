"""Lap analysis without a database: a lap's trace along distance, two laps compared, track outlines, the driven line.

Pure numpy on arrays the data layer decoded; the pages call these on the UI loop (a
comparison of two laps is a few hundred interpolations, well under a millisecond).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from pitbox_appliance.analysis.corners import CornerMap, corner_names, find_corners
from pitbox_appliance.analysis.track_outline import (
    LiveOutline,
    dead_reckon,
    rigid_fit,
)

if TYPE_CHECKING:
    from pitbox_appliance.dashboard.session_data import LapInfo

FloatArray = npt.NDArray[np.float64]

#: Points of the track outline and of a lap comparison (plenty for a 7" screen).
OUTLINE_POINTS = 512
COMPARE_POINTS = 400
#: Points of a driven line (coloured segments on the map).
LINE_POINTS = 300
#: Metres per degree of latitude (and of longitude at the equator).
_M_PER_DEG = 111_320.0


@dataclass(frozen=True, slots=True, eq=False)
class LapTrace:
    """One lap's telemetry against lap distance (``pct`` 0..1, non-decreasing)."""

    lap_id: int
    pct: FloatArray
    time: FloatArray
    speed: FloatArray
    throttle: FloatArray | None = None
    brake: FloatArray | None = None
    lat: FloatArray | None = None
    lon: FloatArray | None = None
    on_pit: FloatArray | None = None
    vx: FloatArray | None = None  # car-frame velocity (live channels)
    vy: FloatArray | None = None
    yaw: FloatArray | None = None

    @property
    def has_gps(self) -> bool:
        return usable_gps(self.lat, self.lon)

    @property
    def has_motion(self) -> bool:
        """Velocity and heading to dead-reckon the lap's line from (live telemetry)."""
        return self.yaw is not None and (self.vx is not None or bool(self.speed.any()))


@dataclass(frozen=True, slots=True)
class LapComparison:
    """Two laps on one distance grid: speeds, and the time B loses (+) or gains (−) on A."""

    unit: str
    rows: tuple[tuple[float, float, float, float], ...]
    sectors: tuple[float, ...]
    total_delta: float


@dataclass(frozen=True, slots=True, eq=False)
class TrackOutline:
    """The track drawn in metres (x east, y north), with lap distance along it.

    ``kind`` is ``gps`` (from a recorded lap's Lat/Lon), ``live`` (integrated from
    the live channels' velocity and heading, cached per track: no GPS frame, so cars
    are placed by lap distance) or ``oval`` (a schematic stand-in before any clean
    lap). ``speed`` (m/s along ``pct``) and ``corners`` come with a real outline.
    """

    kind: str
    note: str
    pct: FloatArray
    x: FloatArray
    y: FloatArray
    origin: tuple[float, float] | None = None
    pit_lane: tuple[tuple[float, float], ...] = field(default=())
    speed: FloatArray | None = None
    corners: CornerMap = field(default=CornerMap(()))
    track_key: str | None = None

    @property
    def points(self) -> FloatArray:
        return np.column_stack((self.x, self.y))

    def at_pct(self, pct: float) -> tuple[float, float]:
        """The point of the outline at lap distance ``pct``."""
        p = min(1.0, max(0.0, pct))
        return float(np.interp(p, self.pct, self.x)), float(
            np.interp(p, self.pct, self.y)
        )

    def project(self, lat: float, lon: float) -> tuple[float, float] | None:
        """Lat/Lon in the outline's metres; None for an oval (no GPS frame)."""
        if self.origin is None:
            return None
        return _project(lat, lon, self.origin)

    def bounds(self, margin: float = 0.06) -> tuple[float, float, float, float]:
        """``(min_x, min_y, width, height)`` with a margin, in metres."""
        xs = np.concatenate([self.x, [p[0] for p in self.pit_lane]])
        ys = np.concatenate([self.y, [p[1] for p in self.pit_lane]])
        x0, x1, y0, y1 = (
            float(xs.min()),
            float(xs.max()),
            float(ys.min()),
            float(ys.max()),
        )
        pad = max(x1 - x0, y1 - y0, 1.0) * margin
        return x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad


def lap_trace_from_frames(
    lap: LapInfo, frames: dict[str, FloatArray]
) -> LapTrace | None:
    """Turn a lap's decoded frames into a trace along lap distance."""
    times = frames.get("SessionTime")
    pct = frames.get("LapDistPct")
    if times is None or pct is None or len(times) < 10 or lap.start_time is None:
        return None
    duration = max(lap.end_time - lap.start_time, 1e-6)
    since = times - lap.start_time
    pct = pct.copy()
    # Around the line the distance of the previous/next lap shows for a tick or two.
    pct[(pct > 0.5) & (since < 0.25 * duration)] -= 1.0
    pct[(pct < 0.5) & (since > 0.75 * duration)] += 1.0
    pct = np.maximum.accumulate(np.clip(pct, 0.0, 1.0))
    # The lap starts at distance 0, time 0 and ends at distance 1 at its lap time, so
    # a comparison ends on the official difference of the two lap times.
    pct = np.concatenate(([0.0], pct, [1.0]))
    since = np.concatenate(([0.0], since, [duration]))

    def channel(name: str) -> FloatArray | None:
        values = frames.get(name)
        if values is None or len(values) != len(times):
            return None
        padded: FloatArray = np.concatenate(([values[0]], values, [values[-1]]))
        return padded

    speed = channel("Speed")
    return LapTrace(
        vx=channel("VelocityX"),
        vy=channel("VelocityY"),
        yaw=channel("Yaw"),
        lap_id=lap.id,
        pct=pct,
        time=since,
        speed=speed if speed is not None else np.zeros_like(pct),
        throttle=channel("Throttle"),
        brake=channel("Brake"),
        lat=channel("Lat"),
        lon=channel("Lon"),
        on_pit=channel("OnPitRoad"),
    )


def compare_laps(
    a: LapTrace,
    b: LapTrace,
    track_length_m: float = 0.0,
    sector_starts: Sequence[float] = (),
    points: int = COMPARE_POINTS,
) -> LapComparison:
    """Speeds of A and B and the running delta (B − A, seconds) along the lap.

    Distance is in metres when the track length is known, else in percent of the lap.
    Sectors come from the sim's split-time info, else the lap in thirds.
    """
    grid = np.linspace(0.0, 1.0, points)
    t_a, t_b = _time_at(a, grid), _time_at(b, grid)
    delta = t_b - t_a
    delta -= delta[0]
    speed_a = np.interp(grid, a.pct, a.speed) * 3.6
    speed_b = np.interp(grid, b.pct, b.speed) * 3.6
    scale, unit = (track_length_m, "m") if track_length_m > 0 else (100.0, "%")
    dist = grid * scale
    rows = tuple(
        (
            round(float(d), 1),
            round(float(sa), 1),
            round(float(sb), 1),
            round(float(dt), 3),
        )
        for d, sa, sb, dt in zip(dist, speed_a, speed_b, delta, strict=True)
    )
    starts = [s for s in sector_starts if 0 < s < 1] or [1 / 3, 2 / 3]
    edges = [0.0, *sorted(starts), 1.0]
    at_edges = np.interp(edges, grid, delta)
    sectors = tuple(round(float(hi - lo), 3) for lo, hi in pairwise(at_edges))
    return LapComparison(unit, rows, sectors, round(float(delta[-1]), 3))


def _time_at(trace: LapTrace, grid: FloatArray) -> FloatArray:
    # Standing still (a pit stop) repeats a distance: take the time it was reached.
    pct, first = np.unique(trace.pct, return_index=True)
    times = trace.time[first]
    result: FloatArray = np.interp(grid, pct, times)
    return result


def gps_outline(
    trace: LapTrace, note: str, points: int = OUTLINE_POINTS
) -> TrackOutline:
    """The outline of a lap with GPS, resampled evenly along lap distance."""
    assert trace.lat is not None
    assert trace.lon is not None
    origin = (float(np.mean(trace.lat)), float(np.mean(trace.lon)))
    xs, ys = project_arrays(trace.lat, trace.lon, origin)
    pct, first = np.unique(trace.pct, return_index=True)
    grid = np.linspace(0.0, 1.0, points)
    x = np.interp(grid, pct, xs[first])
    y = np.interp(grid, pct, ys[first])
    return TrackOutline("gps", note, grid, x, y, origin)


def oval_outline(reason: str, points: int = 128) -> TrackOutline:
    """A schematic oval (start/finish bottom centre, anticlockwise) for tracks without GPS."""
    grid = np.linspace(0.0, 1.0, points)
    angle = -math.pi / 2 + 2 * math.pi * grid
    return TrackOutline(
        "oval",
        f"schematic oval: {reason}; cars placed by lap distance",
        grid,
        200.0 * np.cos(angle),
        100.0 * np.sin(angle),
    )


def live_outline(
    outline: LiveOutline,
    note: str,
    track_key: str | None = None,
    pit_lane: FloatArray | None = None,
) -> TrackOutline:
    """A live-channel outline for the map, turned so its long side lies across.

    Its frame is the sim's own (not north-up): turning it costs nothing and fills a
    landscape screen.
    """
    centre = outline.points.mean(axis=0)
    pts = outline.points - centre
    _u, _s, vt = np.linalg.svd(pts, full_matrices=False)
    angle = -math.atan2(vt[0, 1], vt[0, 0])
    rot = np.array(
        [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    )
    turned = pts @ rot.T
    flip = -1.0 if turned[0, 1] > 0 else 1.0  # the line at the bottom, like the oval
    turned = turned * flip
    lane: tuple[tuple[float, float], ...] = ()
    if pit_lane is not None and len(pit_lane):
        moved = (pit_lane - centre) @ rot.T * flip
        lane = tuple((round(float(x), 1), round(float(y), 1)) for x, y in moved)
    result = TrackOutline(
        "live",
        note,
        outline.pct,
        turned[:, 0],
        turned[:, 1],
        pit_lane=lane,
        speed=outline.speed,
        track_key=track_key,
    )
    return with_corners(result, outline.speed)


def with_corners(
    outline: TrackOutline, speed: FloatArray | None = None
) -> TrackOutline:
    """The outline with its corners found (and named for its track) and its speed."""
    if outline.kind == "oval":
        return outline
    if speed is not None and len(speed) != len(outline.pct):
        speed = None
    corners = find_corners(
        outline.pct,
        outline.x,
        outline.y,
        speed,
        corner_names(outline.track_key),
    )
    return replace(outline, speed=speed, corners=corners)


def corner_labels(
    outline: TrackOutline, offset: float
) -> tuple[tuple[int, float, float], ...]:
    """``(number, x, y)`` for each corner: beside its apex, ``offset`` m to the inside."""
    out = []
    for corner in outline.corners.corners:
        x, y = outline.at_pct(corner.apex)
        ax, ay = outline.at_pct(max(0.0, corner.apex - 0.004))
        bx, by = outline.at_pct(min(1.0, corner.apex + 0.004))
        dx, dy = bx - ax, by - ay
        norm = math.hypot(dx, dy) or 1.0
        side = 1.0 if corner.direction == "left" else -1.0  # left: inside is left
        out.append(
            (
                corner.number,
                x - side * dy / norm * offset,
                y + side * dx / norm * offset,
            )
        )
    return tuple(out)


def speed_on_grid(trace: LapTrace, grid: FloatArray) -> FloatArray:
    """A lap's speed (m/s) at the lap distances of ``grid``."""
    pct, first = np.unique(trace.pct, return_index=True)
    result: FloatArray = np.interp(grid, pct, trace.speed[first])
    return result


@dataclass(frozen=True, slots=True, eq=False)
class DrivenLine:
    """Where a lap went, in the outline's metres, with what the driver did along it."""

    lap_id: int
    pct: FloatArray
    x: FloatArray
    y: FloatArray
    speed: FloatArray  # m/s
    throttle: FloatArray | None
    brake: FloatArray | None
    source: str  # "gps" or "live"


def driven_line(
    trace: LapTrace, outline: TrackOutline, points: int = LINE_POINTS
) -> DrivenLine | None:
    """A lap's line on the outline: its GPS when both have GPS, else dead reckoning.

    Dead reckoning is the outline's own method on this one lap (closed at the line),
    then laid onto the outline by a rigid fit, point by point along the lap.
    None when the lap has neither, or the outline is the schematic oval.
    """
    if outline.kind == "oval":
        return None
    grid = np.linspace(0.0, 1.0, points)
    pct, first = np.unique(trace.pct, return_index=True)
    if len(pct) < 10:
        return None
    if outline.origin is not None and trace.has_gps:
        assert trace.lat is not None
        assert trace.lon is not None
        xs, ys = project_arrays(trace.lat, trace.lon, outline.origin)
        x, y = np.interp(grid, pct, xs[first]), np.interp(grid, pct, ys[first])
        source = "gps"
    elif trace.has_motion:
        assert trace.yaw is not None
        vx = trace.vx if trace.vx is not None else trace.speed
        vy = trace.vy if trace.vy is not None else np.zeros_like(trace.speed)
        xs, ys = dead_reckon(trace.time, vx, vy, trace.yaw)
        steps = np.hypot(np.diff(xs), np.diff(ys))
        s = np.concatenate(([0.0], np.cumsum(steps)))
        if s[-1] <= 1.0:
            return None
        xs = xs - (xs[-1] - xs[0]) * s / s[-1]
        ys = ys - (ys[-1] - ys[0]) * s / s[-1]
        lap = np.column_stack(
            (np.interp(grid, pct, xs[first]), np.interp(grid, pct, ys[first]))
        )
        ref = np.column_stack(
            (
                np.interp(grid, outline.pct, outline.x),
                np.interp(grid, outline.pct, outline.y),
            )
        )
        rot, shift = rigid_fit(lap, ref)
        fitted = lap @ rot.T + shift
        x, y = fitted[:, 0], fitted[:, 1]
        source = "live"
    else:
        return None

    def along(values: FloatArray | None) -> FloatArray | None:
        if values is None:
            return None
        result: FloatArray = np.interp(grid, pct, values[first])
        return result

    speed = along(trace.speed)
    assert speed is not None
    return DrivenLine(
        trace.lap_id,
        grid,
        x,
        y,
        speed,
        along(trace.throttle),
        along(trace.brake),
        source,
    )


def corner_deltas(
    comparison: LapComparison, corners: CornerMap
) -> tuple[tuple[str, float], ...]:
    """Time B gains (−) or loses (+) on A in each corner's zone, in lap order."""
    if not corners.corners or not comparison.rows:
        return ()
    last = comparison.rows[-1][0] or 1.0
    totals: dict[int, float] = {}
    labels = {c.number: c.label for c in corners.corners}
    prev_d = comparison.rows[0][3]
    for dist, _sa, _sb, delta in comparison.rows[1:]:
        zone = corners.zone_id(dist / last)
        if zone is not None:
            totals[zone] = totals.get(zone, 0.0) + (delta - prev_d)
        prev_d = delta
    return tuple((labels[n], round(totals.get(n, 0.0), 3)) for n in sorted(labels))


def _project(
    lat: float, lon: float, origin: tuple[float, float]
) -> tuple[float, float]:
    lat0, lon0 = origin
    return (
        (lon - lon0) * math.cos(math.radians(lat0)) * _M_PER_DEG,
        (lat - lat0) * _M_PER_DEG,
    )


def project_arrays(
    lat: FloatArray, lon: FloatArray, origin: tuple[float, float]
) -> tuple[FloatArray, FloatArray]:
    lat0, lon0 = origin
    x: FloatArray = (lon - lon0) * math.cos(math.radians(lat0)) * _M_PER_DEG
    y: FloatArray = (lat - lat0) * _M_PER_DEG
    return x, y


def usable_gps(lat: FloatArray | None, lon: FloatArray | None) -> bool:
    """GPS that draws a track: finite, not the 0/0 of "no fix", spanning metres."""
    if lat is None or lon is None or len(lat) < 10:
        return False
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        return False
    if np.all(lat == 0) and np.all(lon == 0):
        return False
    return bool(np.ptp(lat) > 1e-5 or np.ptp(lon) > 1e-5)
