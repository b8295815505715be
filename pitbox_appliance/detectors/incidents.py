"""IncidentDetection: off-tracks, spins, contacts and lockups of the team car, checked against iRacing's incident count."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driver_pc.protocol.events import EventKind
from pitbox_appliance.detectors.base import (
    BatchContext,
    Emission,
    Frames,
    LapContext,
    SharedState,
    channel,
    register_detector,
)

# Evidence thresholds (see docs/detectors.md for where each comes from).
# rad/s; normal cornering stays under ~0.6 in the sim, real laps under ~0.9
SPIN_YAW_RATE = 2.0
# m/s²: beyond any braking seen (sim max ~12, its spins ~18; real SK Modified p99.9 19.3)
CONTACT_LONG_ACCEL = 22.0
CONTACT_LAT_ACCEL = 30.0  # m/s²: beyond cornering loads (real p99.9 21-28, sim 18)
LOCKUP_BRAKE = 0.9  # pedal fraction
# Lockup: full brake with deceleration past the car's own braking envelope (this
# factor × the 99th percentile of deceleration under full brake seen so far).
LOCKUP_ENVELOPE = 1.15
ENVELOPE_MIN_S = 10.0  # seconds of full braking before the envelope is trusted
_DECEL_BIN = 0.25  # m/s² per histogram bin
_DECEL_BINS = 160
TRACK_SURFACE_OFF = 0  # irsdk_TrkLoc OffTrack
# How long each kind of evidence must last within a sequence to count, seconds.
# Without PlayerTrackSurface, an off-track shows as a car far slower than its own
# usual speed at that point of the lap (learned per 1 % of distance, green running).
SLOW_FRACTION = 0.7
SPEED_BINS = 100
SPEED_ALPHA = 0.02  # per-sample weight of the running speed profile
SPEED_MIN_SAMPLES = 60  # samples a bin needs (≈ 3 laps at 60 Hz) before it is trusted
PIT_MARGIN_S = (
    8.0  # slow running this close after pit road is the pit exit, not an incident
)
YELLOW_FLAGS = 0x8 | 0x4000 | 0x8000
# A contact needs more than one sample at 60 Hz: every real hit in our recordings stays
# above the level for 2-8 samples (the accelerometer channel is filtered), so a lone
# sample is noise, not an impact.
MIN_EVIDENCE_S = {"off_track": 0.25, "spin": 0.15, "contact": 0.025, "lockup": 0.2}
# A sequence closes this long after its last evidence (iRacing closes its own after ~2 s).
CLOSE_S = 2.5
# Counter increments this long before a sequence's first evidence still belong to it.
COUNT_LEAD_S = 1.0
SEVERITY = ("lockup", "off_track", "spin", "contact")  # worst last
TYPE_OF_POINTS = {1: "off_track", 2: "spin", 4: "contact"}


@dataclass(slots=True)
class _Sequence:
    start: float
    last: float
    lap: int
    pct: float
    evidence_s: dict[str, float] = field(default_factory=dict)
    points: int = 0
    pitted: bool = False  # the car reached pit road while it was open


@register_detector(
    "incident",
    channels=(
        *("SessionTime", "Lap", "LapDistPct", "Speed", "Brake", "OnPitRoad"),
        *("SessionFlags", "PlayerTrackSurface", "Yaw", "YawRate"),
        *("LatAccel", "LongAccel"),
        *("PlayerCarTeamIncidentCount", "PlayerCarMyIncidentCount"),
    ),
    emits=(EventKind.INCIDENT_DETECTED,),
    order=0,  # first: the others read what it found in the same batch
)
class IncidentDetector:
    """Finds incident sequences from the car's motion and iRacing's incident counter.

    Evidence (per tick, off pit road): ``PlayerTrackSurface`` off track; yaw rate
    above ``SPIN_YAW_RATE`` (``YawRate``, else the derivative of ``Yaw``);
    ``LongAccel``/``LatAccel`` spikes beyond any driving load (contact); full brake
    with deceleration past the braking envelope (lockup). Evidence and counter
    increments within ``CLOSE_S`` of each other form one sequence, as iRacing's own
    escalation does; when it closes, one ``incident_detected`` names its worst stage
    and the points the counter added (``PlayerCarTeamIncidentCount``, which survives
    driver changes, else ``PlayerCarMyIncidentCount``).
    """

    name = "incident"

    def __init__(self) -> None:
        self._open: _Sequence | None = None
        self._last_count: int | None = None
        self._last_yaw: tuple[float, float] | None = None  # (time, yaw)
        self._has_counter = False
        self._now = float("-inf")
        self._decel_hist = np.zeros(_DECEL_BINS, dtype=np.float64)  # seconds per bin
        self._speed_ref = np.zeros(SPEED_BINS, dtype=np.float64)
        self._last_pit = float("-inf")
        self._surface = True  # PlayerTrackSurface seen (else off-track = the speed cue)
        self._speed_n = np.zeros(SPEED_BINS, dtype=np.float64)

    def on_frames(
        self, frames: Frames, ctx: BatchContext, shared: SharedState
    ) -> list[Emission]:
        t = frames["SessionTime"].astype(np.float64)
        n = len(t)
        dt = np.diff(t, prepend=t[0] - 1 / 60)
        dt = np.where((dt > 0) & (dt < 0.5), dt, 1 / 60)
        masks = self._evidence(frames, t, dt)
        increments = self._increments(frames)
        out: list[Emission] = []
        active = np.zeros(n, dtype=bool)
        for mask in masks.values():
            active |= mask
        if increments is not None:
            active |= increments > 0
        idx = np.flatnonzero(active)
        lap = channel(frames, "Lap")
        pct = frames["LapDistPct"]
        if len(idx):
            # Runs of consecutive active ticks; each run is handled as one block.
            breaks = np.flatnonzero(np.diff(idx) > 1) + 1
            for run in np.split(idx, breaks):
                first, end = int(run[0]), int(run[-1]) + 1
                start_t = float(t[first])
                seq = self._open
                if seq is not None and start_t > seq.last + CLOSE_S:
                    out += self._close(shared)
                    seq = None
                if seq is None:
                    seq = self._open = _Sequence(
                        start=start_t,
                        last=start_t,
                        lap=int(lap[first]) if lap is not None else 0,
                        pct=float(pct[first]),
                    )
                seq.last = float(t[end - 1])
                for kind, mask in masks.items():
                    seconds = float(dt[first:end][mask[first:end]].sum())
                    if seconds > 0:
                        seq.evidence_s[kind] = seq.evidence_s.get(kind, 0.0) + seconds
                if increments is not None:
                    seq.points += int(increments[first:end].sum())
        self._now = float(t[-1])
        if self._open is not None and self._last_pit >= self._open.start:
            self._open.pitted = True
        if self._open is not None and self._now > self._open.last + CLOSE_S:
            out += self._close(shared)
        shared.incident_open = self._open.start if self._open is not None else None
        if self._open is not None:
            seen = [k for k in SEVERITY if self._open.evidence_s.get(k, 0.0) > 0]
            shared.incident_open_kind = seen[-1] if seen else None
        return out

    def on_lap(self, lap: LapContext, shared: SharedState) -> list[Emission]:
        return []

    def flush(self, shared: SharedState) -> list[Emission]:
        """Close a sequence still open (end of data)."""
        return self._close(shared) if self._open is not None else []

    # ---- evidence -----------------------------------------------------------------
    def _evidence(
        self,
        frames: Frames,
        t: np.ndarray[Any, np.dtype[np.float64]],
        dt: np.ndarray[Any, np.dtype[np.float64]],
    ) -> dict[str, np.ndarray[Any, np.dtype[np.bool_]]]:
        n = len(t)
        on_pit = channel(frames, "OnPitRoad")
        racing = ~on_pit.astype(bool) if on_pit is not None else np.ones(n, dtype=bool)
        masks: dict[str, np.ndarray[Any, np.dtype[np.bool_]]] = {}
        surface = channel(frames, "PlayerTrackSurface")
        if surface is not None:
            masks["off_track"] = racing & (surface == TRACK_SURFACE_OFF)
        else:
            self._surface = False
            pit_t = np.where(racing, -np.inf, t)
            pit_t[0] = max(float(pit_t[0]), self._last_pit)
            last_pit = np.maximum.accumulate(pit_t)
            self._last_pit = float(last_pit[-1])
            slow = self._slow(frames, racing & (t > last_pit + PIT_MARGIN_S))
            if slow is not None:
                masks["off_track"] = slow
        yaw_rate = self._yaw_rate(frames, t, dt)
        if yaw_rate is not None:
            masks["spin"] = racing & (np.abs(yaw_rate) > SPIN_YAW_RATE)
        long_accel = channel(frames, "LongAccel")
        lat_accel = channel(frames, "LatAccel")
        if long_accel is not None and lat_accel is not None:
            masks["contact"] = racing & (
                (long_accel < -CONTACT_LONG_ACCEL)
                | (np.abs(lat_accel) > CONTACT_LAT_ACCEL)
            )
        brake = channel(frames, "Brake")
        if long_accel is not None and brake is not None:
            braking = racing & (brake >= LOCKUP_BRAKE)
            envelope = self._envelope()
            if envelope is not None:
                masks["lockup"] = (
                    braking
                    & (long_accel < -envelope * LOCKUP_ENVELOPE)
                    & (long_accel >= -CONTACT_LONG_ACCEL)
                )
            decel = np.clip(-long_accel[braking] / _DECEL_BIN, 0, _DECEL_BINS - 1)
            self._decel_hist += np.bincount(
                decel.astype(np.int64), weights=dt[braking], minlength=_DECEL_BINS
            )
        return masks

    def _slow(
        self, frames: Frames, racing: np.ndarray[Any, np.dtype[np.bool_]]
    ) -> np.ndarray[Any, np.dtype[np.bool_]] | None:
        """Ticks far slower than this car's usual speed there; learns that speed."""
        speed = channel(frames, "Speed")
        if speed is None:
            return None
        speed = np.asarray(speed, dtype=np.float64)
        flags = channel(frames, "SessionFlags")
        green = racing.copy()
        if flags is not None:
            green &= (np.asarray(flags, dtype=np.int64) & YELLOW_FLAGS) == 0
        pct = np.asarray(frames["LapDistPct"], dtype=np.float64)
        bins = np.clip((pct * SPEED_BINS).astype(np.int64), 0, SPEED_BINS - 1)
        ref = self._speed_ref[bins]
        trusted = self._speed_n[bins] >= SPEED_MIN_SAMPLES
        slow = green & trusted & (speed < SLOW_FRACTION * ref)
        learn = green & ~slow
        counts = np.bincount(bins[learn], minlength=SPEED_BINS).astype(np.float64)
        sums = np.bincount(bins[learn], weights=speed[learn], minlength=SPEED_BINS)
        seen = counts > 0
        mean = np.divide(sums, counts, out=np.zeros(SPEED_BINS), where=seen)
        fresh = seen & (self._speed_n == 0)
        self._speed_ref[fresh] = mean[fresh]
        weight = 1.0 - (1.0 - SPEED_ALPHA) ** counts
        self._speed_ref += np.where(seen, weight * (mean - self._speed_ref), 0.0)
        self._speed_n += counts
        return slow

    def _envelope(self) -> float | None:
        """The 99th percentile of deceleration under full brake so far, m/s²."""
        total = float(self._decel_hist.sum())
        if total < ENVELOPE_MIN_S:
            return None
        cumulative = np.cumsum(self._decel_hist)
        return float(np.searchsorted(cumulative, 0.99 * total) + 1) * _DECEL_BIN

    def _yaw_rate(
        self,
        frames: Frames,
        t: np.ndarray[Any, np.dtype[np.float64]],
        dt: np.ndarray[Any, np.dtype[np.float64]],
    ) -> np.ndarray[Any, np.dtype[np.float64]] | None:
        given = channel(frames, "YawRate")
        if given is not None:
            return np.asarray(given, dtype=np.float64)
        yaw = channel(frames, "Yaw")
        if yaw is None:
            return None
        yaw = np.asarray(yaw, dtype=np.float64)
        prev = self._last_yaw
        self._last_yaw = (float(t[-1]), float(yaw[-1]))
        if prev is not None and 0 < t[0] - prev[0] < 0.5:
            head = prev[1]
        else:
            head = float(yaw[0])
        unwrapped = np.unwrap(np.concatenate(([head], yaw)))
        rate: np.ndarray[Any, np.dtype[np.float64]] = np.diff(unwrapped) / dt
        return rate

    def _increments(self, frames: Frames) -> np.ndarray[Any, np.dtype[np.int64]] | None:
        count = channel(frames, "PlayerCarTeamIncidentCount")
        if count is None:
            count = channel(frames, "PlayerCarMyIncidentCount")
        if count is None:
            return None
        self._has_counter = True
        count = np.asarray(count, dtype=np.int64)
        head = self._last_count if self._last_count is not None else int(count[0])
        self._last_count = int(count[-1])
        steps = np.diff(count, prepend=head)
        # A fall is a new driver's own count (MyIncidentCount) or a reset: not an incident.
        return np.where(steps > 0, steps, 0)

    # ---- closing a sequence ---------------------------------------------------------
    def _close(self, shared: SharedState) -> list[Emission]:
        seq, self._open = self._open, None
        shared.incident_open = None
        if seq is None:
            return []
        found = [
            kind
            for kind in SEVERITY
            if seq.evidence_s.get(kind, 0.0) > MIN_EVIDENCE_S[kind]
        ]
        if (
            found == ["off_track"]
            and not self._surface
            and seq.pitted
            and not seq.points
        ):
            return []  # slowing for pit entry, not an off-track
        by_evidence = found[-1] if found else None
        by_points = _type_of_points(seq.points) if seq.points > 0 else None
        if by_evidence is None and by_points is None:
            return []  # a blip of evidence too short to call, and nothing counted
        kind = _worst(by_evidence, by_points)
        if by_evidence is None:
            confidence = 0.7  # counted by iRacing, nothing seen in the motion
        elif by_points is not None:
            confidence = 1.0
        elif not self._has_counter:
            confidence = 0.8
        else:
            # Seen, but iRacing counted nothing: lockups never count; others are doubtful.
            confidence = 0.8 if kind == "lockup" else 0.6
        payload: dict[str, Any] = {
            "incident": kind,
            "session_time": round(seq.start, 3),
            "lap": seq.lap,
            "lap_dist_pct": round(seq.pct, 5),
            "points": seq.points if self._has_counter else None,
            "confidence": confidence,
        }
        shared.incidents.append({**payload, "end_time": seq.last})
        return [Emission(EventKind.INCIDENT_DETECTED, seq.start, payload)]


def _type_of_points(points: int) -> str:
    if points >= 4:
        return "contact"
    return TYPE_OF_POINTS.get(points, "spin" if points > 2 else "off_track")


def _worst(a: str | None, b: str | None) -> str:
    kinds = [k for k in (a, b) if k is not None]
    return max(kinds, key=SEVERITY.index)
