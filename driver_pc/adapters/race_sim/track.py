"""Martinsville's paperclip as geometry and as per-metre lookup tables for the car field."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

STRAIGHT_M = 240.0
TURN_RADIUS_M = 58.0
TRACK_M = 2 * STRAIGHT_M + 2 * math.pi * TURN_RADIUS_M
ORIGIN_LAT, ORIGIN_LON = 36.6339, -79.8519
METRES_PER_DEG_LAT = 111_320.0
METRES_PER_DEG_LON = METRES_PER_DEG_LAT * math.cos(math.radians(ORIGIN_LAT))

Array = np.ndarray[tuple[int], np.dtype[np.float64]]


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """A point on the track's centre line: position (m), heading (rad), turn radius."""

    x: float
    y: float
    heading: float
    radius: float  # inf on straights


def track_point(s: float) -> TrackPoint:
    """Position on the paperclip at distance ``s`` from the start/finish line."""
    s %= TRACK_M
    half = STRAIGHT_M / 2
    arc = math.pi * TURN_RADIUS_M
    r = TURN_RADIUS_M
    if s < half:
        return TrackPoint(s, -r, 0.0, math.inf)
    s -= half
    if s < arc:
        a = s / r
        return TrackPoint(half + r * math.sin(a), -r * math.cos(a), a, r)
    s -= arc
    if s < STRAIGHT_M:
        return TrackPoint(half - s, r, math.pi, math.inf)
    s -= STRAIGHT_M
    if s < arc:
        a = s / r
        return TrackPoint(-half - r * math.sin(a), r * math.cos(a), math.pi + a, r)
    s -= arc
    return TrackPoint(-half + s, -r, 2 * math.pi, math.inf)


def speed_profile(
    step_m: float = 1.0,
    grip: float = 12.0,
    accel: float = 5.5,
    brake: float = 11.0,
    vmax: float = 52.0,
) -> Array:
    """Fastest speed at each metre: grip-limited in turns, accel/brake-limited between."""
    n = int(TRACK_M / step_m) + 1
    limit = np.array(
        [min(vmax, math.sqrt(grip * track_point(i * step_m).radius)) for i in range(n)]
    )
    v = limit.copy()
    for _ in range(2):  # twice round so the lap wraps smoothly
        for i in range(1, n):
            v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * accel * step_m))
        v[0] = min(v[0], math.sqrt(v[-1] ** 2 + 2 * accel * step_m))
        for i in range(n - 2, -1, -1):
            v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * brake * step_m))
        v[-1] = min(v[-1], math.sqrt(v[0] ** 2 + 2 * brake * step_m))
    return v


@dataclass(frozen=True, slots=True)
class TrackTables:
    """Per-metre tables the vectorised field indexes with ``int(LapDist)``."""

    profile: Array  # fastest speed, m/s
    curvature: Array  # 1/radius, 0 on straights
    straight: Array  # 1.0 on straights, 0.0 in turns (where drafting pays)
    est_time: Array  # seconds from the line to this metre at the profile speed
    lap_time: float  # the profile's lap time, s
    wear_weight: Array  # relative tyre wear per metre (turns wear more)


def track_tables() -> TrackTables:
    """Build the lookup tables once (a few milliseconds)."""
    profile = speed_profile()
    n = len(profile)
    curvature = np.array(
        [1.0 / track_point(float(i)).radius for i in range(n)], dtype=np.float64
    )
    straight = (curvature == 0.0).astype(np.float64)
    est_time = np.concatenate(([0.0], np.cumsum(1.0 / profile[:-1])))
    lap_time = float(est_time[-1] + (TRACK_M - (n - 1)) / profile[-1])
    wear_weight = 0.35 + curvature * TURN_RADIUS_M  # 1.35 in the turns, 0.35 between
    return TrackTables(profile, curvature, straight, est_time, lap_time, wear_weight)
