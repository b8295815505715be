"""Corners of a track from its outline and speed: found, numbered, named, and which corner a lap distance is in.

A corner is a peak of the outline's curvature (the heading's rate along distance,
smoothed over ``SMOOTH_M``) tighter than ``MAX_RADIUS_M``, as wide as it stays at least
half as tight, one way; its apex is the slowest point in it when a speed trace is
given, else the tightest. Corners are
numbered from the line in lap order (T1, T2, …). Names come from ``corner_names.yaml``
in this package, keyed by track key (``track_outline.track_key``): a named corner
takes the name of the listed position nearest its apex.

Every lap distance belongs to one corner's *zone*: from a third of the way along the
straight before it (braking happens there) to a third of the way along the straight
after. Mistakes, training goals and reports ask :func:`CornerMap.zone_at` so they
count by corner instead of by equal slices of the lap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import numpy.typing as npt
import yaml

from pitbox_appliance.analysis.track_outline import OutlineStore

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Turning tighter than this radius (m) is a corner; a fast kink is not.
MAX_RADIUS_M = 250.0
#: Heading is smoothed over this distance before it is differentiated.
SMOOTH_M = 30.0
#: A corner shorter than this (m) is noise.
MIN_CORNER_M = 12.0
#: Share of the straight before a corner that is its approach (the rest is the exit
#: of the one before).
APPROACH_SHARE = 2 / 3
NAMES_FILE = "corner_names.yaml"


@dataclass(frozen=True, slots=True)
class Corner:
    """One corner: its number from the line, name, extent and apex along the lap (0..1)."""

    number: int
    start: float
    apex: float
    end: float
    direction: str  # "left" or "right"
    radius_m: float  # tightest radius in it
    min_speed: float | None = None  # m/s at the apex, when speed was given
    name: str | None = None

    @property
    def label(self) -> str:
        """``T3`` or ``T3 Hairpin``."""
        return f"T{self.number} {self.name}" if self.name else f"T{self.number}"


@dataclass(frozen=True, slots=True)
class CornerMap:
    """A track's corners and the zone of each along the lap."""

    corners: tuple[Corner, ...]
    #: Zone boundaries: corner i's zone runs from ``bounds[i]`` to ``bounds[i + 1]``
    #: (mod 1; the first may start before the line).
    bounds: tuple[float, ...] = ()

    def zone_at(self, pct: float) -> Corner | None:
        """The corner whose zone holds lap distance ``pct`` (None without corners)."""
        if not self.corners:
            return None
        p = pct % 1.0
        n = len(self.corners)
        for i in range(n):
            lo, hi = self.bounds[i], self.bounds[i + 1]
            if _between(p, lo, hi):
                return self.corners[i]
        return self.corners[-1]

    def corner_at(self, pct: float) -> Corner | None:
        """The corner ``pct`` is inside (start to end), None on a straight."""
        p = pct % 1.0
        return next((c for c in self.corners if _between(p, c.start, c.end)), None)

    def zone_id(self, pct: float) -> int | None:
        """The number of the corner whose zone holds ``pct``: what callers count by."""
        corner = self.zone_at(pct)
        return corner.number if corner is not None else None


def find_corners(
    pct: FloatArray,
    x: FloatArray,
    y: FloatArray,
    speed: FloatArray | None = None,
    names: tuple[tuple[float, str], ...] = (),
) -> CornerMap:
    """Corners of a closed outline (x, y in metres on the lap-distance grid ``pct``).

    ``speed`` (m/s on the same grid, e.g. a lap's or the median of laps) places the
    apex at the slowest point; ``names`` are ``(pct, name)`` pairs for this track.
    """
    kappa, step = curvature(x, y)
    length = step * (len(x) - 1)
    if length <= 0 or not np.all(np.isfinite(kappa)):
        return CornerMap(())
    runs = _runs(kappa, step)
    corners: list[Corner] = []
    n = len(pct) - 1  # the last grid point is the first again
    for lo, hi in runs:
        idx = np.arange(lo, hi + 1) % n
        tight = idx[np.argmax(np.abs(kappa[idx]))]
        if speed is not None:
            apex_i = idx[np.argmin(speed[idx])]
            v_min: float | None = float(speed[apex_i])
        else:
            apex_i, v_min = tight, None
        corners.append(
            Corner(
                number=0,
                start=float(pct[lo % n]),
                apex=float(pct[apex_i]),
                end=float(pct[hi % n]),
                direction="left" if kappa[tight] > 0 else "right",
                radius_m=round(1.0 / float(abs(kappa[tight])), 1),
                min_speed=v_min,
            )
        )
    corners.sort(key=lambda c: c.apex)
    named = [
        Corner(
            number=i + 1,
            start=c.start,
            apex=c.apex,
            end=c.end,
            direction=c.direction,
            radius_m=c.radius_m,
            min_speed=c.min_speed,
            name=_name_for(c.apex, names),
        )
        for i, c in enumerate(corners)
    ]
    return CornerMap(tuple(named), _zone_bounds(named))


def curvature(x: FloatArray, y: FloatArray) -> tuple[FloatArray, float]:
    """Signed curvature (1/m, + turning left) at each point of a closed outline, and the step (m)."""
    px, py = x[:-1], y[:-1]  # the closing point repeats the first
    seg = np.hypot(np.diff(x), np.diff(y))
    step = float(seg.mean()) if len(seg) else 0.0
    if step <= 0:
        return np.zeros_like(x), 0.0
    n = len(px)
    heading = np.unwrap(np.arctan2(np.roll(py, -1) - py, np.roll(px, -1) - px))
    # The heading of a closed loop grows by ±2π per lap: take that out before smoothing
    # around the loop, and put it back as a constant rate.
    turn = 2 * math.pi * round((heading[-1] - heading[0]) / (2 * math.pi))
    trend = turn * np.arange(n) / n
    window = max(1, round(SMOOTH_M / step))
    kernel = np.ones(window) / window
    detrended = heading - trend
    padded = np.concatenate((detrended[-window:], detrended, detrended[:window]))
    smooth = np.convolve(padded, kernel, mode="same")[window:-window] + trend
    dtheta = np.gradient(
        np.concatenate((smooth[-1:] - turn, smooth, smooth[:1] + turn))
    )
    kappa = dtheta[1:-1] / step
    return np.concatenate((kappa, kappa[:1])), step


def track_corners(store: OutlineStore, track_key: str) -> CornerMap:
    """The corners of a track from its cached live-channel outline (empty when none).

    For parts without a map of their own (mistakes, training goals, reports):
    ``track_corners(store, key).zone_id(lap_dist_pct)`` is the corner to count by.
    """
    found = store.load(track_key)
    if found is None:
        return CornerMap(())
    outline = found[0]
    return find_corners(
        outline.pct, outline.x, outline.y, outline.speed, corner_names(track_key)
    )


class CornerCache:
    """Each track's corners from the outline store, found again only when its file changed.

    For the core, which asks once per lap: a ``stat`` of the track's file, and
    ``find_corners`` only after the dashboard refined the outline.
    """

    def __init__(self, store: OutlineStore | None) -> None:
        self.store = store
        self._found: dict[str, tuple[int, CornerMap]] = {}

    def get(self, key: str | None) -> CornerMap | None:
        """The corners of track ``key``; None without a store, an outline or a corner."""
        if self.store is None or not key:
            return None
        try:
            stamp = self.store.path(key).stat().st_mtime_ns
        except OSError:
            return None
        cached = self._found.get(key)
        if cached is None or cached[0] != stamp:
            try:
                found = track_corners(self.store, key)
            except Exception:  # a cache file no outline can come from: no corners
                logger.exception("track %s: no corners from its cached outline", key)
                found = CornerMap(())
            cached = (stamp, found)
            self._found[key] = cached
        return cached[1] if cached[1].corners else None


@cache
def _all_names() -> dict[str, Any]:
    try:
        text = resources.files(__package__).joinpath(NAMES_FILE).read_text("utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        logger.warning("corner names unreadable: %s", exc)
        return {}
    return data if isinstance(data, dict) else {}


def corner_names(track_key: str | None) -> tuple[tuple[float, str], ...]:
    """``(pct, name)`` pairs for a track from ``corner_names.yaml`` (empty when unknown)."""
    if not track_key:
        return ()
    entry = _all_names().get(track_key)
    corners = entry.get("corners") if isinstance(entry, Mapping) else None
    out = []
    for item in corners if isinstance(corners, list) else ():
        try:
            out.append((float(item["at"]) % 1.0, str(item["name"])))
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(out)


# ---- helpers ----------------------------------------------------------------------------
def _runs(kappa: FloatArray, step: float) -> list[tuple[int, int]]:
    """Index ranges (lo, hi inclusive; may run past the end) of the curvature peaks.

    Tightest first, each peak spreads both ways while the heading turns the same way
    at least half as tight (its width at half height), then on down its shoulders while
    the turn keeps opening, over points no other peak took.
    """
    n = len(kappa) - 1
    k = kappa[:n]
    size = np.abs(k)
    taken = np.zeros(n, dtype=bool)
    runs: list[tuple[int, int]] = []
    for peak in np.argsort(-size, kind="stable"):
        if size[peak] <= 1.0 / MAX_RADIUS_M:
            break
        if taken[peak]:
            continue
        floor = max(0.5 * size[peak], 1.0 / MAX_RADIUS_M)
        sign = np.sign(k[peak])

        def same(i: int, floor: float = floor, sign: float = sign) -> bool:
            j = i % n
            return not taken[j] and np.sign(k[j]) == sign and size[j] > floor

        lo, hi = int(peak), int(peak)
        while hi - lo < n - 1 and same(lo - 1):
            lo -= 1
        while hi - lo < n - 1 and same(hi + 1):
            hi += 1
        # The shoulders, as long as the turn keeps opening, belong to this corner too.
        edge = 1.0 / MAX_RADIUS_M
        while (
            hi - lo < n - 1
            and same(lo - 1, edge)
            and size[(lo - 1) % n] <= size[lo % n] * 1.02
        ):
            lo -= 1
        while (
            hi - lo < n - 1
            and same(hi + 1, edge)
            and size[(hi + 1) % n] <= size[hi % n] * 1.02
        ):
            hi += 1
        taken[np.arange(lo, hi + 1) % n] = True
        if (hi - lo + 1) * step >= MIN_CORNER_M:
            runs.append((lo % n, lo % n + (hi - lo)))
    return runs


def _zone_bounds(corners: list[Corner]) -> tuple[float, ...]:
    if not corners:
        return ()
    bounds = []
    for prev, nxt in zip([corners[-1], *corners[:-1]], corners, strict=True):
        gap = (nxt.start - prev.end) % 1.0
        bounds.append((prev.end + (1 - APPROACH_SHARE) * gap) % 1.0)
    return (*bounds, bounds[0])


def _between(p: float, lo: float, hi: float) -> bool:
    """``lo <= p < hi`` on a loop (a span may cross the line)."""
    if lo <= hi:
        return lo <= p < hi
    return p >= lo or p < hi


def _name_for(apex: float, names: tuple[tuple[float, str], ...]) -> str | None:
    if not names:
        return None
    at, name = min(names, key=lambda n: _loop_gap(n[0], apex))
    return name if _loop_gap(at, apex) <= 0.06 else None


def _loop_gap(a: float, b: float) -> float:
    d = abs(a - b) % 1.0
    return min(d, 1.0 - d)
