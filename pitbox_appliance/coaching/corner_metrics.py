"""Per-corner measures of one lap (braking point, minimum speed, throttle pickup, time) and their summary over laps."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from pitbox_appliance.analysis.corners import CornerMap

FloatArray = npt.NDArray[np.float64]

#: Brake pedal above this is braking.
BRAKE_ON = 0.10
#: Throttle at or above this after the apex is the pickup.
THROTTLE_ON = 0.50
#: A zone with fewer frames than this in a lap is not measured (a gap, a reset).
MIN_FRAMES = 5
#: Channels a lap's measures need.
CHANNELS = ("SessionTime", "LapDistPct", "Speed", "Brake", "Throttle")
#: Measures summarised per corner, and whether lower is better.
LOWER_IS_BETTER = {
    "braking_point_m": True,
    "throttle_pickup_m": True,
    "min_speed_kph": False,
    "corner_time_s": True,
    "corner_time_sd_s": True,
}


def corner_id(number: int) -> str:
    """The id a goal names a corner by: ``T3``."""
    return f"T{number}"


@dataclass(frozen=True, slots=True)
class CornerLap:
    """One corner in one lap: time through its zone and the three input measures.

    ``braking_point_m``: metres before the slowest point where the brake went on
    (None: no braking); ``throttle_pickup_m``: metres after it where the throttle was
    back at 50 % (0 when it never dropped); ``min_speed_kph`` at the slowest point.
    """

    corner: int
    time_s: float
    braking_point_m: float | None
    min_speed_kph: float
    throttle_pickup_m: float | None
    apex_pct: float

    def value(self, measure: str) -> float | None:
        """One measure by name (``corner_time_s`` is ``time_s``)."""
        if measure == "corner_time_s":
            return self.time_s
        found = getattr(self, measure, None)
        return None if found is None else float(found)


def lap_corner_metrics(
    columns: Mapping[str, FloatArray], corners: CornerMap, length_m: float
) -> dict[int, CornerLap]:
    """Each corner's measures in one lap's frames (time order, one lap).

    ``columns`` holds the :data:`CHANNELS` arrays; ``length_m`` the lap length.
    """
    if not corners.corners or length_m <= 0:
        return {}
    t = np.asarray(columns["SessionTime"], dtype=np.float64)
    pct = np.asarray(columns["LapDistPct"], dtype=np.float64) % 1.0
    speed = np.asarray(columns["Speed"], dtype=np.float64)
    brake = np.asarray(columns["Brake"], dtype=np.float64)
    throttle = np.asarray(columns["Throttle"], dtype=np.float64)
    if len(t) < MIN_FRAMES:
        return {}
    dt = np.diff(t, append=t[-1])
    dt = np.where((dt > 0) & (dt < 0.5), dt, 0.0)
    out: dict[int, CornerLap] = {}
    bounds = corners.bounds
    for i, corner in enumerate(corners.corners):
        lo, hi = bounds[i], bounds[i + 1]
        if lo <= hi:
            mask = (pct >= lo) & (pct < hi)
        else:
            mask = (pct >= lo) | (pct < hi)
        idx = np.flatnonzero(mask)
        if len(idx) < MIN_FRAMES:
            continue
        # Along the zone from its start (it may cross the line).
        q = (pct[idx] - lo) % 1.0
        idx = idx[np.argsort(q, kind="stable")]
        q = (pct[idx] - lo) % 1.0
        apex = int(np.argmin(speed[idx]))
        braking = np.flatnonzero(brake[idx[: apex + 1]] > BRAKE_ON)
        brake_m = float((q[apex] - q[braking[0]]) * length_m) if len(braking) else None
        after = throttle[idx[apex:]]
        if after[0] >= THROTTLE_ON:
            pickup_m: float | None = 0.0
        else:
            on = np.flatnonzero(after >= THROTTLE_ON)
            pickup_m = (
                float((q[apex + on[0]] - q[apex]) * length_m) if len(on) else None
            )
        out[corner.number] = CornerLap(
            corner=corner.number,
            time_s=float(dt[idx].sum()),
            braking_point_m=brake_m,
            min_speed_kph=float(speed[idx[apex]] * 3.6),
            throttle_pickup_m=pickup_m,
            apex_pct=float(pct[idx[apex]]),
        )
    return out


@dataclass(frozen=True, slots=True)
class CornerSummary:
    """A corner's measures over several laps: medians, and the spread of its time."""

    corner: int
    laps: tuple[int, ...]
    values: dict[str, float]  # measure → median (corner_time_sd_s: SD of the times)
    per_lap: dict[str, tuple[float, ...]]  # measure → value per lap, lap order

    def value(self, measure: str) -> float | None:
        return self.values.get(measure)


def summarise(
    laps: Iterable[tuple[int, Mapping[int, CornerLap]]],
) -> dict[int, CornerSummary]:
    """Per corner, the medians of each measure over ``(lap number, metrics)`` pairs."""
    per: dict[int, list[tuple[int, CornerLap]]] = {}
    for lap_number, metrics in laps:
        for number, cl in metrics.items():
            per.setdefault(number, []).append((lap_number, cl))
    out: dict[int, CornerSummary] = {}
    for number, rows in per.items():
        values: dict[str, float] = {}
        per_lap: dict[str, tuple[float, ...]] = {}
        for measure in ("braking_point_m", "throttle_pickup_m", "min_speed_kph"):
            got = [v for _, cl in rows if (v := cl.value(measure)) is not None]
            per_lap[measure] = tuple(got)
            if got:
                values[measure] = float(statistics.median(got))
        times = [cl.time_s for _, cl in rows]
        per_lap["corner_time_s"] = tuple(times)
        values["corner_time_s"] = float(statistics.median(times))
        if len(times) >= 3:
            values["corner_time_sd_s"] = float(statistics.stdev(times))
        out[number] = CornerSummary(number, tuple(n for n, _ in rows), values, per_lap)
    return out


def window(
    columns: Mapping[str, FloatArray], start: float, end: float
) -> dict[str, FloatArray]:
    """The frames of ``columns`` with ``start <= SessionTime < end``."""
    t = columns["SessionTime"]
    mask = (t >= start) & (t < end)
    return {name: np.asarray(col)[mask] for name, col in columns.items()}


def rounded(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded for JSON, None kept (and NaN made None)."""
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def as_json(metrics: Mapping[int, CornerLap]) -> list[dict[str, Any]]:
    """A lap's corner measures as JSON rows."""
    return [
        {
            "corner": corner_id(cl.corner),
            "time_s": rounded(cl.time_s),
            "braking_point_m": rounded(cl.braking_point_m, 1),
            "min_speed_kph": rounded(cl.min_speed_kph, 1),
            "throttle_pickup_m": rounded(cl.throttle_pickup_m, 1),
        }
        for cl in metrics.values()
    ]


def spread(values: Sequence[float]) -> float | None:
    """Sample SD, or None under two values."""
    return float(statistics.stdev(values)) if len(values) >= 2 else None
