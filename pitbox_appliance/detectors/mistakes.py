"""Mistake detection per track section (braking, throttle, line, spin), stored for the heatmaps, not published."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pitbox_appliance.detectors.base import (
    BatchContext,
    Emission,
    Frames,
    LapContext,
    SharedState,
    channel,
    register_detector,
)

SECTIONS = 20  # equal slices of lap distance
REFERENCE_LAPS = 8  # clean laps whose per-section medians are the reference
MIN_REFERENCE_LAPS = 3
MIN_LOSS_S = 0.08  # a section this much slower than the reference ...
LOSS_SPREAD = 4.0  # ... and this many robust SDs of the reference, is a mistake
SEVERITY_FULL_S = 1.0  # a loss of this much (or a spin) is severity 1
BRAKE_MARGIN_S = 0.08  # braking this much longer than the reference: a braking mistake
THROTTLE_MARGIN = 0.08  # mean throttle this much lower: a throttle mistake
SLOW_SECTIONS = SECTIONS // 2  # more slow sections than this: a yellow or slow lap
YELLOW_FLAGS = 0x8 | 0x4000 | 0x8000
_COLUMNS = ("SessionTime", "LapDistPct", "Throttle", "Brake")
MISTAKE_KINDS = ("braking", "throttle", "line", "spin")
MAX_BUFFER_S = 30 * 60  # no lap is longer


@dataclass(frozen=True, slots=True)
class _LapProfile:
    lap: int
    driver: str
    start: float
    end: float
    times: np.ndarray[Any, np.dtype[np.float64]]  # seconds per section
    brake_s: np.ndarray[Any, np.dtype[np.float64]]  # seconds on the brake per section
    throttle: np.ndarray[Any, np.dtype[np.float64]]  # mean throttle per section
    yellow: bool


@register_detector("mistake", channels=(*_COLUMNS, "SessionFlags"), stores=("mistake",))
class MistakeDetector:
    """Per-section losses of a lap against the driver's recent clean laps, with their cause.

    Each completed lap is cut into ``SECTIONS`` equal slices of ``LapDistPct``; a slice
    slower than the reference (per-section median of the last clean laps) by more than
    ``MIN_LOSS_S`` and ``LOSS_SPREAD`` robust SDs is a mistake: ``spin`` when a spin or
    contact started in it, ``line`` for an off-track, ``braking`` when the brake was on
    longer than usual, ``throttle`` when less throttle was used, else ``line`` (slower
    with the usual inputs). A lap is judged one lap later, when incidents near its end
    have closed. Stored as ``mistake`` event rows (payload in docs/detectors.md).
    """

    name = "mistake"

    def __init__(self) -> None:
        self._chunks: list[np.ndarray[Any, np.dtype[np.float64]]] = []
        self._pending: _LapProfile | None = None
        self._reference: list[_LapProfile] = []

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
        times = np.stack([r.times for r in ref])
        median = np.median(times, axis=0)
        spread = 1.4826 * np.median(np.abs(times - median), axis=0)
        loss = lap.times - median
        slow = loss > np.maximum(MIN_LOSS_S, LOSS_SPREAD * spread)
        if slow.sum() > SLOW_SECTIONS:
            return []  # the whole lap was slow: a yellow, a pit lap or traffic
        if not incidents and not slow.any():
            self._reference = [*self._reference[-4 * REFERENCE_LAPS :], lap]
        brake_ref = np.median(np.stack([r.brake_s for r in ref]), axis=0)
        throttle_ref = np.median(np.stack([r.throttle for r in ref]), axis=0)
        out: list[Emission] = []
        for section in np.flatnonzero(slow):
            s = int(section)
            kind, pct = self._cause(lap, s, incidents)
            if kind is None:
                if lap.brake_s[s] > brake_ref[s] + BRAKE_MARGIN_S:
                    kind = "braking"
                elif lap.throttle[s] < throttle_ref[s] - THROTTLE_MARGIN:
                    kind = "throttle"
                else:
                    kind = "line"
            severity = 1.0 if kind == "spin" else min(1.0, loss[s] / SEVERITY_FULL_S)
            payload = {
                "mistake": kind,
                "lap": lap.lap,
                "lap_dist_pct": round(pct, 4),
                "section": s,
                "severity": round(float(severity), 3),
                "driver": lap.driver,
            }
            at = lap.start + float(np.sum(lap.times[:s]))
            out.append(Emission("mistake", at, payload, publish=False))
        return out

    @staticmethod
    def _cause(
        lap: _LapProfile, section: int, incidents: list[dict[str, Any]]
    ) -> tuple[str | None, float]:
        centre = (section + 0.5) / SECTIONS
        for incident in incidents:
            pct = float(incident["lap_dist_pct"])
            if int(pct * SECTIONS) % SECTIONS != section:
                continue
            if incident["incident"] in ("spin", "contact"):
                return "spin", pct
            if incident["incident"] == "off_track":
                return "line", pct
            if incident["incident"] == "lockup":
                return "braking", pct
        return None, centre


def _profile(
    window: np.ndarray[Any, np.dtype[np.float64]], lap: LapContext
) -> _LapProfile:
    t, pct = window[:, 0], window[:, 1]
    # Distance only grows within a lap; wobbles (off-tracks, resets) must not fold it.
    mono = np.maximum.accumulate(np.clip(pct, 0.0, 1.0)) if len(pct) else pct
    edges = np.linspace(0.0, 1.0, SECTIONS + 1)
    if len(t) >= 2 and mono[-1] > mono[0]:
        unique, first = np.unique(mono, return_index=True)
        crossing = np.interp(edges, unique, t[first])
        crossing[0], crossing[-1] = lap.start_time or t[0], lap.end_time
    else:
        crossing = np.linspace(
            lap.start_time or lap.end_time, lap.end_time, SECTIONS + 1
        )
    section = np.clip((mono * SECTIONS).astype(np.int64), 0, SECTIONS - 1)
    dt = np.diff(t, append=t[-1]) if len(t) else t
    brake_s = np.bincount(
        section, weights=dt * (window[:, 3] > 0.05), minlength=SECTIONS
    )
    thr_sum = np.bincount(section, weights=window[:, 2], minlength=SECTIONS)
    count = np.bincount(section, minlength=SECTIONS)
    throttle = np.divide(thr_sum, count, out=np.zeros(SECTIONS), where=count > 0)
    return _LapProfile(
        lap=lap.lap_number,
        driver=lap.driver,
        start=lap.start_time or lap.end_time,
        end=lap.end_time,
        times=np.diff(crossing),
        brake_s=np.asarray(brake_s[:SECTIONS], dtype=np.float64),
        throttle=throttle[:SECTIONS],
        yellow=bool(window[:, 4].any()) if len(window) else False,
    )
