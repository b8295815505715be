"""Track sections and per-lap section times from telemetry (time at fixed LapDistPct boundaries)."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from cloud_sync.compacted import CompactedSession, Lap

SECTIONS = 10  # equal shares of the lap distance; see docs/cloud.md
BRAKING_SHARE = (
    0.10  # a section is a braking zone when the brake is on this share of it
)
BRAKE_ON = 0.05


@dataclass
class LapSections:
    """One clean lap cut into sections: time, brake and throttle use per section."""

    lap: Lap
    times: np.ndarray[Any, np.dtype[np.float64]]  # seconds per section
    brake_share: np.ndarray[Any, np.dtype[np.float64]]  # share of samples braking
    throttle_mean: np.ndarray[Any, np.dtype[np.float64]]
    min_speed: np.ndarray[Any, np.dtype[np.float64]]


def section_names(count: int = SECTIONS) -> list[str]:
    return [f"S{i + 1}" for i in range(count)]


def corner_pieces(session: CompactedSession) -> tuple[list[float], list[str]]:
    """Lap-distance edges that cut a lap at every corner zone's start, and each piece's corner.

    A zone that crosses the line is two pieces with the same label (``T1``, ``T3
    Hairpin``…); empty lists when the set has no corners.
    """
    if not session.corners:
        return [], []
    starts = {c.zone_start % 1.0 for c in session.corners} - {0.0}
    edges = [0.0, *sorted(starts), 1.0]
    labels = []
    for lo, hi in pairwise(edges):
        corner = session.corner_at((lo + hi) / 2)
        labels.append(corner.label if corner is not None else "?")
    return edges, labels


def lap_sections(
    session: CompactedSession,
    count: int = SECTIONS,
    edges: list[float] | None = None,
) -> list[LapSections]:
    """Every clean lap with telemetry cut into ``count`` equal sections, or at ``edges``.

    ``edges`` (sorted, from 0.0 to 1.0) cut the lap into ``len(edges) - 1`` pieces,
    e.g. at the corner zones of :func:`corner_pieces`. Empty without telemetry.
    """
    tel = session.telemetry
    if not tel:
        return []
    time = tel["SessionTime"]
    pct = tel["LapDistPct"]
    edges_arr = (
        np.asarray(edges, dtype=np.float64) if edges else np.linspace(0, 1, count + 1)
    )
    count = len(edges_arr) - 1
    out = []
    for lap in session.laps:
        if not lap.clean or lap.start_time is None:
            continue
        lo = np.searchsorted(time, lap.start_time, "left")
        hi = np.searchsorted(time, lap.end_time, "right")
        if hi - lo < 4 * count:
            continue
        raw = np.clip(pct[lo:hi], 0.0, 1.0)
        # The first samples may still read the previous lap's ~1.0.
        start = int(np.argmax(raw < 0.5)) if raw[0] > 0.5 else 0
        t = time[lo + start : hi]
        p = np.maximum.accumulate(raw[start:])
        if len(p) < 4 * count or p[-1] < 0.95:
            continue
        inner = np.interp(edges_arr[1:-1], p, t)
        bounds = np.concatenate(([lap.start_time], inner, [lap.end_time]))
        times = np.diff(bounds)
        if np.any(times <= 0):
            continue
        index = np.clip(np.searchsorted(edges_arr, p, "right") - 1, 0, count - 1)
        brake = tel.get("Brake")
        throttle = tel.get("Throttle")
        speed = tel.get("Speed")
        sl = slice(lo + start, hi)
        out.append(
            LapSections(
                lap=lap,
                times=times,
                brake_share=_per_section(
                    index, (brake[sl] > BRAKE_ON) if brake is not None else None, count
                ),
                throttle_mean=_per_section(
                    index, throttle[sl] if throttle is not None else None, count
                ),
                min_speed=_per_section(
                    index, speed[sl] if speed is not None else None, count, np.min
                ),
            )
        )
    return out


def _per_section(
    index: np.ndarray[Any, Any],
    values: np.ndarray[Any, Any] | None,
    count: int,
    how: Any = np.mean,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    out = np.full(count, np.nan)
    if values is None:
        return out
    values = np.asarray(values, dtype=np.float64)
    for i in range(count):
        chosen = values[index == i]
        if len(chosen):
            out[i] = float(how(chosen))
    return out


def section_kinds(laps: list[LapSections]) -> list[str]:
    """``braking`` where the brake is used on the fastest lap, else ``throttle``."""
    if not laps:
        return []
    best = min(laps, key=lambda s: float(s.times.sum()))
    return [
        "braking" if share >= BRAKING_SHARE else "throttle"
        for share in np.nan_to_num(best.brake_share)
    ]


def robust_spread(values: list[float]) -> float | None:
    """1.4826 × median absolute deviation: a standard deviation that ignores outliers."""
    if len(values) < 2:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return float(1.4826 * np.median(np.abs(arr - np.median(arr))))
