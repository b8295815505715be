"""Feature vectors of each model, computed the same way for training and on the device.

Every function returns ``(features, reference)`` or None when there is not enough
history: the models predict a correction relative to ``reference`` (a median of the
recent laps), so one model serves cars of any pace or consumption.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LAP_TIME_FEATURES = (
    "last_minus_median_s",  # last racing lap − median of the window
    "previous_minus_median_s",  # the lap before it − median
    "stint_lap_index_10",  # laps since the stop / 10: tyre age and fuel burnt
    "window_mad_s",  # median absolute deviation of the window
    "stint_slope_s_per_lap",  # Theil-Sen slope of the stint's racing laps, clipped
    "window_fill",  # racing laps in the window / window size
)
LAP_TIME_WINDOW = 8
MAX_SLOPE = 0.3

FUEL_FEATURES = (
    "last_fuel_ratio",  # last clean lap's fuel / median of the window − 1
    "last_time_ratio",  # last clean lap's time / median time − 1
    "window_fill",
    "fuel_spread_ratio",  # (max − min) fuel of the window / median
)
FUEL_WINDOW = 5

FATIGUE_FEATURES = (
    "stint_hours",  # time driven by this driver since the stint started
    "lap_time_cv_pct",  # coefficient of variation of the last 5 laps, %
    "stint_slope_pct_per_lap",  # lap-time trend over the stint, % per lap
    "last_vs_best_pct",  # last lap against the stint's best, %
    "stint_laps_50",  # laps in the stint / 50
)

INCIDENT_CLASSES = ("off_track", "spin", "contact")
INCIDENT_FEATURES = (
    "min_speed_ratio",  # lowest speed / speed at the window's start
    "max_long_decel_g",  # largest deceleration, g
    "max_lat_g",  # largest lateral acceleration, g
    "yaw_travel_rad",  # total yaw change (unwrapped)
    "max_steer_rad",  # largest steering angle
    "duration_s",  # time the car spent off the racing surface / slowed
)
GRAVITY = 9.80665


@dataclass(frozen=True, slots=True)
class LapRecord:
    """One completed lap as the advisor sees it."""

    lap: int
    time_s: float | None
    fuel_l: float | None
    pit: bool
    driver: str


def lap_time_features(
    stint_racing: Sequence[float], stint_indices: Sequence[int]
) -> tuple[np.ndarray, float] | None:
    """Features of the next-lap-time model from the stint's racing laps so far."""
    times = list(stint_racing)
    if len(times) < 2:
        return None
    window = times[-LAP_TIME_WINDOW:]
    median = statistics.median(window)
    mad = statistics.median(abs(t - median) for t in window)
    slope = theil_sen_slope(list(stint_indices), times)
    x = np.array(
        [
            window[-1] - median,
            window[-2] - median,
            stint_indices[-1] / 10.0,
            mad,
            max(-MAX_SLOPE, min(MAX_SLOPE, slope)),
            len(window) / LAP_TIME_WINDOW,
        ],
        dtype=np.float32,
    )
    return x, median


def clean_laps(laps: Sequence[LapRecord]) -> list[LapRecord]:
    """Laps with a time and a positive fuel use, that were not pit laps."""
    return [
        lap
        for lap in laps
        if not lap.pit
        and lap.time_s is not None
        and lap.fuel_l is not None
        and lap.fuel_l > 0
    ]


def fuel_features(laps: Sequence[LapRecord]) -> tuple[np.ndarray, float] | None:
    """Features of the fuel-per-lap model from the car's previous laps."""
    window = clean_laps(laps)[-FUEL_WINDOW:]
    if not window:
        return None
    fuel = [lap.fuel_l for lap in window if lap.fuel_l is not None]
    times = [lap.time_s for lap in window if lap.time_s is not None]
    median_fuel = statistics.median(fuel)
    median_time = statistics.median(times)
    x = np.array(
        [
            fuel[-1] / median_fuel - 1,
            times[-1] / median_time - 1,
            len(window) / FUEL_WINDOW,
            (max(fuel) - min(fuel)) / median_fuel,
        ],
        dtype=np.float32,
    )
    return x, median_fuel


def current_stint(laps: Sequence[LapRecord]) -> list[LapRecord]:
    """The laps since the last driver change or pit lap (that lap excluded)."""
    stint: list[LapRecord] = []
    for lap in reversed(laps):
        if stint and (lap.driver != stint[-1].driver or lap.pit):
            break
        stint.append(lap)
    stint.reverse()
    return stint


def fatigue_features(laps: Sequence[LapRecord]) -> tuple[np.ndarray, float] | None:
    """Features of the fatigue model from the laps of the current driver's stint."""
    stint = current_stint(laps)
    timed = [lap.time_s for lap in stint if lap.time_s is not None and not lap.pit]
    if len(timed) < 3:
        return None
    hours = sum(lap.time_s for lap in stint if lap.time_s is not None) / 3600
    recent = timed[-5:]
    mean = statistics.fmean(recent)
    best = min(timed)
    slope = theil_sen_slope(list(range(len(timed))), timed)
    x = np.array(
        [
            hours,
            100 * statistics.pstdev(recent) / mean,
            100 * slope / best,
            100 * (timed[-1] / best - 1),
            len(stint) / 50,
        ],
        dtype=np.float32,
    )
    return x, 0.0


def incident_features(
    time_s: np.ndarray,
    speed: np.ndarray,
    long_accel: np.ndarray,
    lat_accel: np.ndarray,
    yaw: np.ndarray,
    steer: np.ndarray,
) -> np.ndarray:
    """Features of the incident classifier from one incident's telemetry window."""
    if len(time_s) < 2:
        raise ValueError("incident window needs at least 2 samples")
    start_speed = max(float(speed[0]), 1.0)
    slow = speed < 0.8 * start_speed
    duration = float(np.sum(np.diff(time_s)[slow[1:]])) if slow.any() else 0.0
    return np.array(
        [
            float(speed.min()) / start_speed,
            max(0.0, float(-long_accel.min())) / GRAVITY,
            float(np.abs(lat_accel).max()) / GRAVITY,
            float(np.abs(np.diff(np.unwrap(yaw))).sum()),
            float(np.abs(steer).max()),
            duration,
        ],
        dtype=np.float32,
    )


def theil_sen_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Median of the slopes between every pair of points (robust to traffic laps)."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    dx = xs[None, :] - xs[:, None]
    dy = ys[None, :] - ys[:, None]
    pairs = np.triu(np.ones(dx.shape, dtype=bool), k=1) & (dx != 0)
    if not pairs.any():
        return 0.0
    slope = float(np.median(dy[pairs] / dx[pairs]))
    return slope if math.isfinite(slope) else 0.0
