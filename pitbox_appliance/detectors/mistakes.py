"""Mistake detection per corner (braking, throttle, line, spin), stored for the heatmaps, not published."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pitbox_appliance.analysis.corners import CornerMap
from pitbox_appliance.detectors.base import (
    BatchContext,
    Emission,
    Frames,
    LapContext,
    SharedState,
    channel,
    register_detector,
)

SECTIONS = 20  # equal slices of lap distance, until the track's corners are known
FINE = 200  # a lap's profile is kept in this many slices; a zone is a sum of them
REFERENCE_LAPS = 8  # clean laps whose per-zone medians are the reference
MIN_REFERENCE_LAPS = 3
MIN_LOSS_S = 0.08  # a zone this much slower than the reference ...
LOSS_SPREAD = 4.0  # ... and this many robust SDs of the reference, is a mistake
SEVERITY_FULL_S = 1.0  # a loss of this much (or a spin) is severity 1
BRAKE_MARGIN_S = 0.08  # braking this much longer than the reference: a braking mistake
THROTTLE_MARGIN = 0.08  # mean throttle this much lower: a throttle mistake
YELLOW_FLAGS = 0x8 | 0x4000 | 0x8000
_COLUMNS = ("SessionTime", "LapDistPct", "Throttle", "Brake")
MISTAKE_KINDS = ("braking", "throttle", "line", "spin")
MAX_BUFFER_S = 30 * 60  # no lap is longer

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True, slots=True)
class _LapProfile:
    """One lap in ``FINE`` equal slices of lap distance, whatever zones judge it."""

    lap: int
    driver: str
    start: float
    end: float
    times: FloatArray  # seconds per slice
    brake_s: FloatArray  # seconds on the brake per slice
    throttle_sum: FloatArray  # summed throttle samples per slice
    samples: FloatArray  # samples per slice
    yellow: bool

    def time_at(self, pct: float) -> float:
        """Session time when the car passed lap distance ``pct``."""
        return self.start + float(np.sum(self.times[: int(pct * FINE)]))


@dataclass(frozen=True, slots=True)
class _Zones:
    """The parts a lap is judged in: each corner's zone, else ``SECTIONS`` equal slices."""

    of_slice: np.ndarray[Any, np.dtype[np.int64]]  # zone index of each fine slice
    place: tuple[float, ...]  # where a zone's mistake sits: the apex, else its centre
    corners: CornerMap | None

    @property
    def count(self) -> int:
        return len(self.place)

    def of_pct(self, pct: float) -> int:
        """The zone holding lap distance ``pct``."""
        if self.corners is not None:
            corner = self.corners.zone_at(pct)
            if corner is not None:
                return self.corners.corners.index(corner)
        return int(self.of_slice[min(FINE - 1, max(0, int(pct % 1.0 * FINE)))])

    def sums(self, per_slice: FloatArray) -> FloatArray:
        """Per-slice figures summed per zone."""
        out = np.bincount(self.of_slice, weights=per_slice, minlength=self.count)
        return np.asarray(out, dtype=np.float64)

    @classmethod
    def of(cls, corners: CornerMap | None) -> _Zones:
        centres = (np.arange(FINE) + 0.5) / FINE
        if corners is None or not corners.corners:
            return cls(
                (centres * SECTIONS).astype(np.int64),
                tuple((s + 0.5) / SECTIONS for s in range(SECTIONS)),
                None,
            )
        index = {c.number: i for i, c in enumerate(corners.corners)}
        of_slice = np.array(
            [index[corners.zone_at(float(c)).number] for c in centres],  # type: ignore[union-attr]
            dtype=np.int64,
        )
        return cls(of_slice, tuple(c.apex for c in corners.corners), corners)


#: Equal slices: the zones before corners are known, and the whole-lap check always.
_EQUAL = _Zones.of(None)


@register_detector("mistake", channels=(*_COLUMNS, "SessionFlags"), stores=("mistake",))
class MistakeDetector:
    """Per-corner losses of a lap against the driver's recent clean laps, with their cause.

    A lap is judged in the zones of the track's corners (``LapContext.corners``: from
    the braking before a corner to the exit after it), or in ``SECTIONS`` equal slices
    of ``LapDistPct`` until the track's outline is known. A zone slower than the
    reference (per-zone median of the last clean laps) by more than ``MIN_LOSS_S`` and
    ``LOSS_SPREAD`` robust SDs is a mistake: ``spin`` when a spin or contact started in
    it, ``line`` for an off-track, ``braking`` when the brake was on longer than usual,
    ``throttle`` when less throttle was used, else ``line`` (slower with the usual
    inputs). Laps are kept in fine slices, so a corner map that arrives or changes
    mid-session judges against the same reference laps. A lap is judged one lap
    later, when incidents near its end have closed. Stored as ``mistake`` event rows
    (payload in docs/detectors.md).
    """

    name = "mistake"

    def __init__(self) -> None:
        self._chunks: list[FloatArray] = []
        self._pending: _LapProfile | None = None
        self._reference: list[_LapProfile] = []
        self._zones = _EQUAL

    def on_frames(
        self, frames: Frames, ctx: BatchContext, shared: SharedState
    ) -> list[Emission]:
        names = frames.dtype.names or ()
        if not len(frames) or not all(c in names for c in _COLUMNS):
            return []
        block = np.empty((len(frames), 5), dtype=np.float64)
        for i, name in enumerate(_COLUMNS):
            block[:, i] = frames[name]
        flags = channel(frames, "SessionFlags")
        block[:, 4] = (
            (np.asarray(flags, dtype=np.int64) & YELLOW_FLAGS) != 0
            if flags is not None
            else 0.0
        )
        self._chunks.append(block)
        if (
            len(self._chunks) > 1
            and block[-1, 0] - self._chunks[0][0, 0] > MAX_BUFFER_S
        ):
            data = np.concatenate(self._chunks)  # laps stopped completing: bound memory
            self._chunks = [data[data[:, 0] >= data[-1, 0] - MAX_BUFFER_S]]
        return []

    def on_lap(self, lap: LapContext, shared: SharedState) -> list[Emission]:
        if lap.corners is not self._zones.corners:
            self._zones = _Zones.of(lap.corners)
        data = np.concatenate(self._chunks) if self._chunks else np.empty((0, 5))
        rest = data[data[:, 0] >= lap.end_time]
        # A lap ending at or after the newest frame leaves nothing buffered.
        self._chunks = [rest] if len(rest) else []
        out = self._judge(self._pending, shared) if self._pending else []
        self._pending = None
        if lap.start_time is None or lap.lap_time is None or lap.pit_lap:
            return out
        window = data[(data[:, 0] >= lap.start_time) & (data[:, 0] < lap.end_time)]
        self._pending = _profile(window, lap)
        return out

    def _judge(self, lap: _LapProfile, shared: SharedState) -> list[Emission]:
        incidents = [
            i
            for i in shared.incidents[-20:]
            if lap.start <= i["session_time"] < lap.end
        ]
        if lap.yellow:
            return []
        ref = [r for r in self._reference if r.driver == lap.driver][-REFERENCE_LAPS:]
        if len(ref) < MIN_REFERENCE_LAPS:
            if not incidents:
                self._reference = [*self._reference[-4 * REFERENCE_LAPS :], lap]
            return []
        if _slow(_EQUAL, lap, ref)[1].sum() > SECTIONS // 2:
            return []  # the whole lap was slow: a yellow, a pit lap or traffic
        zones = self._zones
        loss, slow = _slow(zones, lap, ref)
        if not incidents and not slow.any():
            self._reference = [*self._reference[-4 * REFERENCE_LAPS :], lap]
        brake = zones.sums(lap.brake_s)
        brake_ref = np.median(np.stack([zones.sums(r.brake_s) for r in ref]), axis=0)
        throttle = _mean_throttle(zones, lap)
        throttle_ref = np.median(
            np.stack([_mean_throttle(zones, r) for r in ref]), axis=0
        )
        out: list[Emission] = []
        for zone in np.flatnonzero(slow):
            z = int(zone)
            kind, pct = _cause(zones, z, incidents)
            if kind is None:
                if brake[z] > brake_ref[z] + BRAKE_MARGIN_S:
                    kind = "braking"
                elif throttle[z] < throttle_ref[z] - THROTTLE_MARGIN:
                    kind = "throttle"
                else:
                    kind = "line"
            severity = 1.0 if kind == "spin" else min(1.0, loss[z] / SEVERITY_FULL_S)
            payload: dict[str, Any] = {
                "mistake": kind,
                "lap": lap.lap,
                "lap_dist_pct": round(pct, 4),
                "section": z,
                "severity": round(float(severity), 3),
                "driver": lap.driver,
            }
            if zones.corners is not None:
                payload["corner"] = zones.corners.corners[z].number
            out.append(Emission("mistake", lap.time_at(pct), payload, publish=False))
        return out


def _slow(
    zones: _Zones, lap: _LapProfile, ref: list[_LapProfile]
) -> tuple[FloatArray, np.ndarray[Any, np.dtype[np.bool_]]]:
    """Time lost per zone against the reference laps' medians, and which zones are slow."""
    times = np.stack([zones.sums(r.times) for r in ref])
    median = np.median(times, axis=0)
    spread = 1.4826 * np.median(np.abs(times - median), axis=0)
    loss = zones.sums(lap.times) - median
    return loss, loss > np.maximum(MIN_LOSS_S, LOSS_SPREAD * spread)


def _cause(
    zones: _Zones, zone: int, incidents: list[dict[str, Any]]
) -> tuple[str | None, float]:
    """The kind an incident in ``zone`` gives its mistake, and where; else (None, zone's place)."""
    for incident in incidents:
        pct = float(incident["lap_dist_pct"])
        if zones.of_pct(pct) != zone:
            continue
        if incident["incident"] in ("spin", "contact"):
            return "spin", pct
        if incident["incident"] == "off_track":
            return "line", pct
        if incident["incident"] == "lockup":
            return "braking", pct
    return None, zones.place[zone]


def _mean_throttle(zones: _Zones, lap: _LapProfile) -> FloatArray:
    total, count = zones.sums(lap.throttle_sum), zones.sums(lap.samples)
    out: FloatArray = np.divide(
        total, count, out=np.zeros(zones.count), where=count > 0
    )
    return out


def _profile(window: FloatArray, lap: LapContext) -> _LapProfile:
    t, pct = window[:, 0], window[:, 1]
    # Distance only grows within a lap; wobbles (off-tracks, resets) must not fold it.
    mono = np.maximum.accumulate(np.clip(pct, 0.0, 1.0)) if len(pct) else pct
    edges = np.linspace(0.0, 1.0, FINE + 1)
    if len(t) >= 2 and mono[-1] > mono[0]:
        unique, first = np.unique(mono, return_index=True)
        crossing = np.interp(edges, unique, t[first])
        crossing[0], crossing[-1] = lap.start_time or t[0], lap.end_time
    else:
        crossing = np.linspace(lap.start_time or lap.end_time, lap.end_time, FINE + 1)
    piece = np.clip((mono * FINE).astype(np.int64), 0, FINE - 1)
    dt = np.diff(t, append=t[-1]) if len(t) else t
    brake_s = np.bincount(piece, weights=dt * (window[:, 3] > 0.05), minlength=FINE)
    return _LapProfile(
        lap=lap.lap_number,
        driver=lap.driver,
        start=lap.start_time or lap.end_time,
        end=lap.end_time,
        times=np.diff(crossing),
        brake_s=np.asarray(brake_s[:FINE], dtype=np.float64),
        throttle_sum=np.asarray(
            np.bincount(piece, weights=window[:, 2], minlength=FINE)[:FINE],
            dtype=np.float64,
        ),
        samples=np.bincount(piece, minlength=FINE)[:FINE].astype(np.float64),
        yellow=bool(window[:, 4].any()) if len(window) else False,
    )
