"""The track outline from live channels (no GPS): dead reckoning per clean lap, closed at the line, averaged, cached per track.

Live iRacing telemetry has no ``Lat``/``Lon``; it has the car-frame velocity
(``VelocityX`` forward, ``VelocityY`` left, m/s) and the heading ``Yaw`` (rad,
anticlockwise, in the sim's own track frame; absolute, so it does not drift). Their
integral over one lap is the lap's path. The few metres it misses at the line (tick
quantisation, the speed channel's own error) are spread along the lap in proportion to
distance, so the path closes where it started. Laps are resampled by ``LapDistPct``
and averaged after a rigid fit to the running mean; every further lap refines it. The
result is in metres in the sim's frame: x, y of an arbitrary rotation (the map is not
north-up without GPS), which is all a map needs.

Pure numpy on arrays; :class:`OutlineStore` keeps one small JSON file per track and
layout so that the outline survives sessions.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Points of an outline along the lap (plenty for a 7" screen and for corners).
OUTLINE_POINTS = 512
#: A gap between two ticks longer than this breaks a lap (a pause, a lost stretch).
MAX_GAP_S = 0.5
#: LapDistPct falling by more than this away from the line is a reset or a tow.
MAX_PCT_DROP = 0.02
#: A lap whose closure error exceeds this share of its length is no clean lap.
MAX_CLOSURE_SHARE = 0.05
#: Weight of the running mean is capped here, so later laps still refine it.
MAX_WEIGHT = 20
#: Channels the outline needs (``Speed`` stands in for the velocity when it is missing).
CHANNELS = ("SessionTime", "LapDistPct", "VelocityX", "VelocityY", "Yaw", "Speed")
#: Version of the cache file format.
STORE_VERSION = 1


@dataclass(frozen=True, slots=True, eq=False)
class LapPath:
    """One lap's path on an even lap-distance grid, closed (last point = first)."""

    pct: FloatArray
    x: FloatArray
    y: FloatArray
    closure_m: float  # how far the raw integral ended from where it started
    length_m: float  # the raw path's length
    speed: FloatArray | None = None  # m/s on the same grid

    @property
    def points(self) -> FloatArray:
        return np.column_stack((self.x, self.y))


@dataclass(frozen=True, slots=True, eq=False)
class LiveOutline:
    """The averaged outline of a track from live channels, with how many laps built it."""

    pct: FloatArray
    x: FloatArray
    y: FloatArray
    laps: int
    spread_m: float  # mean distance of the last added lap from the mean before it
    speed: FloatArray | None = None  # mean m/s on the grid (where corners are slow)

    @property
    def points(self) -> FloatArray:
        return np.column_stack((self.x, self.y))

    @property
    def length_m(self) -> float:
        return float(np.sum(np.hypot(np.diff(self.x), np.diff(self.y))))

    def refined(self, path: LapPath) -> LiveOutline:
        """Return the outline with one more lap averaged in (rigidly fitted to it first)."""
        grid = self.pct
        new = _on_grid(path, grid)
        rot, shift = rigid_fit(new, self.points)
        fitted = new @ rot.T + shift
        spread = float(np.mean(np.linalg.norm(fitted - self.points, axis=1)))
        weight = min(self.laps, MAX_WEIGHT)
        mean = (self.points * weight + fitted) / (weight + 1)
        mean[-1] = mean[0]
        speed = self.speed
        if path.speed is not None:
            new_speed = np.interp(grid, path.pct, path.speed)
            speed = (
                new_speed
                if speed is None
                else (speed * weight + new_speed) / (weight + 1)
            )
        return LiveOutline(grid, mean[:, 0], mean[:, 1], self.laps + 1, spread, speed)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "laps": self.laps,
            "spread_m": round(self.spread_m, 3),
            "x": [round(float(v), 2) for v in self.x],
            "y": [round(float(v), 2) for v in self.y],
        }
        if self.speed is not None:
            data["speed"] = [round(float(v), 2) for v in self.speed]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LiveOutline:
        x = np.asarray(data["x"], dtype=np.float64)
        y = np.asarray(data["y"], dtype=np.float64)
        if x.shape != y.shape or x.ndim != 1 or len(x) < 8:
            raise ValueError("outline x/y must be equal 1-D lists of 8+ points")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("outline has non-finite points")
        speed = data.get("speed")
        v = np.asarray(speed, dtype=np.float64) if speed is not None else None
        if v is not None and (v.shape != x.shape or not np.all(np.isfinite(v))):
            v = None
        return cls(
            np.linspace(0.0, 1.0, len(x)),
            x,
            y,
            int(data.get("laps", 1)),
            float(data.get("spread_m", 0.0)),
            v,
        )


def outline_from_laps(paths: list[LapPath]) -> LiveOutline | None:
    """Average lap paths into one outline (the first lap sets the frame)."""
    if not paths:
        return None
    outline = _first(paths[0])
    for path in paths[1:]:
        outline = outline.refined(path)
    return outline


def lap_paths(
    frames: Mapping[str, FloatArray],
    points: int = OUTLINE_POINTS,
    on_pit: FloatArray | None = None,
) -> list[LapPath]:
    """Every complete clean lap in a stream of frames, as closed paths.

    A lap runs from one ``LapDistPct`` wrap (above 0.9 to below 0.1) to the next, with
    no gap in time, no reset or tow (distance falling), and never on pit road (``on_pit``
    or the frames' ``OnPitRoad``).
    """
    time = frames.get("SessionTime")
    pct = frames.get("LapDistPct")
    yaw = frames.get("Yaw")
    if time is None or pct is None or yaw is None or len(time) < 20:
        return []
    vx, vy = _velocity(frames)
    if vx is None or vy is None:
        return []
    pit = on_pit if on_pit is not None else frames.get("OnPitRoad")
    x, y = dead_reckon(time, vx, vy, yaw)
    speed = frames.get("Speed")
    if speed is None:
        speed = np.hypot(vx, vy)
    out = []
    for a, b in _lap_spans(time, pct, pit):
        path = _close_lap(pct, x, y, a, b, points, speed=speed)
        if path is not None:
            out.append(path)
    return out


def dead_reckon(
    time: FloatArray, vx: FloatArray, vy: FloatArray, yaw: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Positions (m, from 0,0) by integrating the car-frame velocity turned by the yaw."""
    cos, sin = np.cos(yaw), np.sin(yaw)
    wx = vx * cos - vy * sin
    wy = vx * sin + vy * cos
    dt = np.diff(time)
    x = np.concatenate(([0.0], np.cumsum(0.5 * (wx[1:] + wx[:-1]) * dt)))
    y = np.concatenate(([0.0], np.cumsum(0.5 * (wy[1:] + wy[:-1]) * dt)))
    return x, y


def rigid_fit(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Rotation and shift that best lay points ``a`` onto ``b`` (Kabsch, no scaling)."""
    ca, cb = a.mean(axis=0), b.mean(axis=0)
    h = (a - ca).T @ (b - cb)
    u, _s, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot: FloatArray = vt.T @ np.diag([1.0, d]) @ u.T
    shift: FloatArray = cb - ca @ rot.T
    return rot, shift


def deviation(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """Mean and max distance (m) between ``a`` rigidly fitted onto ``b``, point by point."""
    rot, shift = rigid_fit(a, b)
    dist = np.linalg.norm(a @ rot.T + shift - b, axis=1)
    return float(dist.mean()), float(dist.max())


def gps_lap_paths(
    frames: Mapping[str, FloatArray],
    points: int = OUTLINE_POINTS,
    on_pit: FloatArray | None = None,
) -> list[LapPath]:
    """The same laps as :func:`lap_paths`, their points from ``Lat``/``Lon`` (the truth)."""
    time, pct = frames.get("SessionTime"), frames.get("LapDistPct")
    lat, lon = frames.get("Lat"), frames.get("Lon")
    if time is None or pct is None or lat is None or lon is None:
        return []
    good = (lat != 0) | (lon != 0)
    if good.sum() < 20:
        return []
    lat0, lon0 = float(np.mean(lat[good])), float(np.mean(lon[good]))
    x = (lon - lon0) * math.cos(math.radians(lat0)) * 111_320.0
    y = (lat - lat0) * 111_320.0
    pit = on_pit if on_pit is not None else frames.get("OnPitRoad")
    speed = frames.get("Speed")  # where the apexes are (the slowest point)
    out = []
    for a, b in _lap_spans(time, pct, pit):
        path = _close_lap(pct, x, y, a, b, points, close=False, speed=speed)
        if path is not None:
            out.append(path)
    return out


def pit_lane_path(
    frames: Mapping[str, FloatArray], outline: LiveOutline, max_points: int = 150
) -> FloatArray | None:
    """The pit lane in the outline's frame, dead-reckoned from a stretch with a pit visit.

    The stretch is integrated as one piece; its on-track part (off pit road, moving) is
    laid onto the outline at its lap distances by a rigid fit, which places the pit-road
    part beside the track. None without enough of either part.
    """
    time, pct = frames.get("SessionTime"), frames.get("LapDistPct")
    pit, yaw = frames.get("OnPitRoad"), frames.get("Yaw")
    if time is None or pct is None or pit is None or yaw is None or len(time) < 20:
        return None
    vx, vy = _velocity(frames)
    if vx is None or vy is None:
        return None
    # Start after the last reset or tow (a jump the integral cannot follow).
    drops = np.flatnonzero(
        (np.diff(pct) < -MAX_PCT_DROP) & ~((pct[:-1] > 0.9) & (pct[1:] < 0.1))
    )
    gaps = np.flatnonzero(np.diff(time) > MAX_GAP_S)
    start = int(max([*drops, *gaps, -1])) + 1
    time, pct, pit, yaw = time[start:], pct[start:], pit[start:], yaw[start:]
    vx, vy = vx[start:], vy[start:]
    on_pit = pit > 0.5
    moving = np.hypot(vx, vy) > 5.0
    track = ~on_pit & moving
    if on_pit.sum() < 5 or track.sum() < 50:
        return None
    x, y = dead_reckon(time, vx, vy, yaw)
    ref = np.column_stack(
        (
            np.interp(pct[track], outline.pct, outline.x),
            np.interp(pct[track], outline.pct, outline.y),
        )
    )
    rot, shift = rigid_fit(np.column_stack((x[track], y[track])), ref)
    lane = np.column_stack((x[on_pit], y[on_pit])) @ rot.T + shift
    step = max(1, len(lane) // max_points)
    result: FloatArray = lane[::step]
    return result


# ---- the cache --------------------------------------------------------------------------
def track_key(weekend_info: Mapping[str, Any] | None, fallback: str = "") -> str | None:
    """A file-safe key for a track and layout: ``TrackID`` and ``TrackConfigName``.

    Without an id the track name (``TrackName``, else ``fallback``) stands in.
    """
    info = weekend_info or {}
    track_id = info.get("TrackID")
    config = str(info.get("TrackConfigName") or "").strip()
    if isinstance(track_id, int) and not isinstance(track_id, bool):
        base = f"id{track_id}"
    else:
        base = str(info.get("TrackName") or fallback).strip()
    if not base:
        return None
    key = f"{base}-{config}" if config else base
    return re.sub(r"[^a-z0-9-]+", "_", key.lower()).strip("_-") or None


class OutlineStore:
    """One JSON file per track and layout: the outline and which laps built it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, key: str) -> tuple[LiveOutline, frozenset[str]] | None:
        """The cached outline and the ids of the laps in it; None when absent or bad."""
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
            if data.get("version") != STORE_VERSION:
                return None
            outline = LiveOutline.from_json(data["outline"])
            used = frozenset(str(v) for v in data.get("lap_ids", ()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("track outline cache %s unreadable: %s", key, exc)
            return None
        return outline, used

    def save(
        self,
        key: str,
        outline: LiveOutline,
        lap_ids: frozenset[str],
        label: str = "",
        pit_lane: FloatArray | None = None,
    ) -> None:
        """Write atomically (a reader never sees half a file)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "version": STORE_VERSION,
            "track": label,
            "lap_ids": sorted(lap_ids)[-500:],
            "outline": outline.to_json(),
        }
        if pit_lane is not None:
            data["pit_lane"] = [[round(float(v), 2) for v in p] for p in pit_lane]
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, separators=(",", ":"))
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def refine(
        self,
        key: str,
        laps: Mapping[str, LapPath],
        label: str = "",
    ) -> LiveOutline | None:
        """Add the laps not yet in the cached outline; save and return the result."""
        found = self.load(key)
        outline, used = found if found is not None else (None, frozenset[str]())
        fresh = {lap_id: p for lap_id, p in laps.items() if lap_id not in used}
        if not fresh:
            return outline
        for path in fresh.values():
            if outline is None:
                outline = _first(path)
            else:
                outline = outline.refined(path)
        assert outline is not None
        extra = self._extra(key)
        self.save(
            key,
            outline,
            used | frozenset(fresh),
            label or str(extra.get("track") or ""),
            self.pit_lane(key),
        )
        return outline

    def pit_lane(self, key: str) -> FloatArray | None:
        """The track's cached pit lane (outline metres, n × 2); None when not traced."""
        lane = self._extra(key).get("pit_lane")
        try:
            points = np.asarray(lane, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if points.ndim != 2 or points.shape[1:] != (2,) or len(points) < 2:
            return None
        return points if np.all(np.isfinite(points)) else None

    def set_pit_lane(self, key: str, lane: FloatArray) -> None:
        """Keep a traced pit lane with the track's outline (which must be cached)."""
        found = self.load(key)
        if found is None:
            return
        extra = self._extra(key)
        self.save(key, found[0], found[1], str(extra.get("track") or ""), lane)

    def _extra(self, key: str) -> dict[str, Any]:
        try:
            data = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


# ---- helpers ----------------------------------------------------------------------------
def _velocity(
    frames: Mapping[str, FloatArray],
) -> tuple[FloatArray | None, FloatArray | None]:
    vx, vy = frames.get("VelocityX"), frames.get("VelocityY")
    if vx is not None and vy is not None:
        return vx, vy
    speed = frames.get("Speed")
    if speed is None:
        return None, None
    # Without the car-frame velocity the car is taken to go where it points.
    return speed, np.zeros_like(speed)


def _lap_spans(
    time: FloatArray, pct: FloatArray, on_pit: FloatArray | None
) -> Iterator[tuple[int, int]]:
    """Index pairs (a, b): tick a is the last before one line crossing, b the next's."""
    wraps = np.flatnonzero((pct[:-1] > 0.9) & (pct[1:] < 0.1))
    for a, b in itertools.pairwise(wraps):
        seg = slice(a, b + 2)
        if np.any(np.diff(time[seg]) > MAX_GAP_S) or np.any(np.diff(time[seg]) <= 0):
            continue
        inner = pct[a + 1 : b + 1]
        if np.any(np.diff(inner) < -MAX_PCT_DROP):
            continue
        if on_pit is not None and np.any(on_pit[seg] > 0.5):
            continue
        yield int(a), int(b)


def _close_lap(
    pct: FloatArray,
    x: FloatArray,
    y: FloatArray,
    a: int,
    b: int,
    points: int,
    close: bool = True,
    speed: FloatArray | None = None,
) -> LapPath | None:
    """The path from the crossing after tick ``a`` to the one after tick ``b``."""
    f0 = _crossing(pct[a], pct[a + 1])
    f1 = _crossing(pct[b], pct[b + 1])
    start = (x[a] + f0 * (x[a + 1] - x[a]), y[a] + f0 * (y[a + 1] - y[a]))
    end = (x[b] + f1 * (x[b + 1] - x[b]), y[b] + f1 * (y[b + 1] - y[b]))
    px = np.concatenate(([start[0]], x[a + 1 : b + 1], [end[0]]))
    py = np.concatenate(([start[1]], y[a + 1 : b + 1], [end[1]]))
    pp = np.concatenate(([0.0], np.clip(pct[a + 1 : b + 1], 0.0, 1.0), [1.0]))
    pp = np.maximum.accumulate(pp)
    steps = np.hypot(np.diff(px), np.diff(py))
    s = np.concatenate(([0.0], np.cumsum(steps)))
    length = float(s[-1])
    if length <= 1.0:
        return None
    gap_x, gap_y = px[-1] - px[0], py[-1] - py[0]
    closure = math.hypot(gap_x, gap_y)
    if close:
        if closure > MAX_CLOSURE_SHARE * length:
            return None
        px = px - gap_x * s / length
        py = py - gap_y * s / length
    grid = np.linspace(0.0, 1.0, points)
    uniq, first = np.unique(pp, return_index=True)
    gx = np.interp(grid, uniq, px[first]) - px[0]
    gy = np.interp(grid, uniq, py[first]) - py[0]
    if close:
        gx[-1], gy[-1] = gx[0], gy[0]
    on_grid = None
    if speed is not None:
        ps = np.concatenate(([speed[a]], speed[a + 1 : b + 1], [speed[b + 1]]))
        on_grid = np.interp(grid, uniq, ps[first])
    return LapPath(grid, gx, gy, closure, length, on_grid)


def _first(path: LapPath) -> LiveOutline:
    return LiveOutline(path.pct, path.x, path.y, 1, 0.0, path.speed)


def _crossing(before: float, after: float) -> float:
    """Where between two ticks (0..1) the distance wrapped past 1.0."""
    gone = 1.0 - float(before)
    total = gone + float(after)
    return gone / total if total > 0 else 0.0


def _on_grid(path: LapPath, grid: FloatArray) -> FloatArray:
    if len(path.pct) == len(grid) and np.allclose(path.pct, grid):
        return path.points
    return np.column_stack(
        (np.interp(grid, path.pct, path.x), np.interp(grid, path.pct, path.y))
    )
