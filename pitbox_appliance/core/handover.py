"""Several PCs per car: which one drives, which frames count, CarIdx* timing when none does, and what the others watch.

In an iRacing team race every connected team member runs the sim, and so may run a
shim, for the same car. Only the one in the car sees its player channels (speed,
pedals, fuel, lap); the others spectate, with ``IsOnTrackCar`` 0 and their player
channels not describing the car, while the ``CarIdx*`` arrays stay valid on every PC.

``DrivingPcElection`` picks the PC that drives (sticky: it keeps the car until its own
frames say it left, or it goes quiet); only that PC's in-car frames, newer than the
last frame taken, reach segmentation, fuel, inputs and detectors. ``CarIdxLapBridge``
keeps the car's lap count and times from any PC's ``CarIdx*`` arrays while no PC is in
the car: during a driver swap, or when the driving PC drops. ``CameraWatch`` keeps what
the PCs out of the car were watching (the broadcast camera, for sponsor exposure) as
small pieces, since their frames are not stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from driver_pc.protocol.events import CAMERA_PIECE_S, CameraView
from driver_pc.protocol.live import PcRole

Frames = np.ndarray[Any, np.dtype[np.void]]

# What the core decodes for the hand-over (besides segmentation's channels).
HANDOVER_CHANNELS = (
    "IsOnTrackCar",
    "PlayerCarIdx",
    "CarIdxLap",
    "CarIdxLapDistPct",
    "CarIdxOnPitRoad",
    "CarIdxPosition",
    "CarIdxLastLapTime",
    "CamCarIdx",
    "CamGroupNumber",
)
# A PC that sent nothing for this long (wall clock), or whose newest frame is this far
# behind another PC's (session time: replays run faster than the wall), is quiet: it
# no longer holds the car.
QUIET_S = 2.0


@dataclass(slots=True)
class _Pc:
    source: str
    seen: float = 0.0  # wall clock of its newest message
    session_time: float = 0.0  # SessionTime of its newest frame
    in_car: bool = False  # its newest frame says it is in the car
    claims: bool = False  # it ever sent an IsOnTrackCar channel


def in_car_mask(frames: Frames) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """The frames in which this PC is in the car.

    Without ``IsOnTrackCar`` (recordings, sims without it) a frame counts when it
    places the player on track (``LapDistPct`` ≥ 0): iRacing reads -1 out of the car.
    """
    names = frames.dtype.names or ()
    if "IsOnTrackCar" in names:
        return frames["IsOnTrackCar"].astype(bool)
    return np.asarray(frames["LapDistPct"] >= 0.0)


def in_car_last(frames: Frames) -> bool:
    """Whether the newest of ``frames`` is in the car (``in_car_mask`` of the last)."""
    names = frames.dtype.names or ()
    if "IsOnTrackCar" in names:
        return bool(frames["IsOnTrackCar"][-1])
    return bool(frames["LapDistPct"][-1] >= 0.0)


class DrivingPcElection:
    """Elects the PC that drives a car, robust to flicker and to PCs coming and going."""

    def __init__(self) -> None:
        self._pcs: dict[str, _Pc] = {}
        self.elected: str | None = None
        self.handovers = 0

    def observe(self, source: str, frames: Frames, now: float) -> str | None:
        """Note a batch of ``source``; the PC that drives now (None: nobody is in)."""
        pc = self._pcs.get(source)
        if pc is None:
            pc = self._pcs[source] = _Pc(source)
        pc.seen = now
        if len(frames):
            pc.session_time = float(frames["SessionTime"][-1])
            pc.in_car = in_car_last(frames)
        return self.elect(now)

    def elect(self, now: float) -> str | None:
        """Keep the driving PC while it is in and talking; else the PC that is."""
        if len(self._pcs) == 1:
            # One PC (the common case, every message): it drives while it is in the
            # car and talking; its frames are the newest by definition.
            (pc,) = self._pcs.values()
            new = pc.source if pc.in_car and now - pc.seen < QUIET_S else None
            if new != self.elected and new is not None:
                self.handovers += self.elected is not None
            self.elected = new
            return new
        newest = max((pc.session_time for pc in self._pcs.values()), default=0.0)

        def talking(pc: _Pc) -> bool:
            return now - pc.seen < QUIET_S and newest - pc.session_time < QUIET_S

        current = self._pcs.get(self.elected) if self.elected else None
        if current is not None and current.in_car and talking(current):
            return self.elected
        candidates = [pc for pc in self._pcs.values() if pc.in_car and talking(pc)]
        chosen = max(candidates, key=lambda pc: pc.session_time, default=None)
        new = chosen.source if chosen is not None else None
        if new != self.elected and new is not None:
            self.handovers += self.elected is not None
        self.elected = new
        return new

    def roles(self, now: float) -> dict[str, PcRole]:
        """Each PC's role right now."""
        if len(self._pcs) == 1:
            ((source, pc),) = self._pcs.items()
            if source == self.elected:
                return {source: PcRole.DRIVING}
            return {source: PcRole.STANDBY if now - pc.seen < QUIET_S else PcRole.GONE}
        newest = max((pc.session_time for pc in self._pcs.values()), default=0.0)
        return {
            source: PcRole.DRIVING
            if source == self.elected
            else (
                PcRole.STANDBY
                if now - pc.seen < QUIET_S and newest - pc.session_time < QUIET_S
                else PcRole.GONE
            )
            for source, pc in sorted(self._pcs.items())
        }

    def forget(self, source: str) -> None:
        self._pcs.pop(source, None)
        if self.elected == source:
            self.elected = None


@dataclass(frozen=True, slots=True)
class BridgedLap:
    """A lap of our car completed while no PC was in it, from ``CarIdx*`` data."""

    lap_number: int
    end_time: float
    lap_time: float | None
    pit_lap: bool


@dataclass(slots=True)
class _Stream:
    """Where one PC's ``CarIdx*`` view of our car was at its newest frame."""

    lap: int | None = None
    pct: float | None = None
    t: float = float("-inf")
    published: float = -1.0
    pit: bool = False


class CarIdxLapBridge:
    """Our car's line crossings from ``CarIdx*`` arrays, fed by every PC of the car.

    Every PC's arrays describe our car, so the bridge sees each crossing whichever
    PC is connected. Each PC's stream is walked on its own (its frames older than
    its own newest are skipped), and a crossing counts once by its lap number: the
    same crossing seen by three PCs, or late from a PC with a backlog (a frozen or
    slow PC, a core behind its queue), is still the same lap. Only the frames where
    ``CarIdxLap`` changes are looked at one by one.
    """

    KEEP_LAPS = 64  # crossings kept (by lap number) for timing laps around a gap

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._crossings: dict[int, float] = {}  # lap number -> when it was completed

    def lap_start(self, lap_number: int) -> float | None:
        """When lap ``lap_number`` began (the crossing that completed the one before)."""
        return self._crossings.get(lap_number - 1)

    @property
    def last_crossing(self) -> float | None:
        """The newest crossing any PC reported (None: none yet)."""
        if not self._crossings:
            return None
        return self._crossings[max(self._crossings)]

    def feed(self, frames: Frames, car_idx: int, source: str = "") -> list[BridgedLap]:
        """Laps our car (``car_idx``) completed in ``frames`` of ``source``, new ones only.

        Our car's column of each array is a few values a batch: they are walked as
        Python numbers (a dozen numpy calls a batch cost more than the walk).
        """
        names = frames.dtype.names or ()
        if "CarIdxLap" not in names or "CarIdxLapDistPct" not in names:
            return []
        if not 0 <= car_idx < frames["CarIdxLap"].shape[-1]:
            return []
        stream = self._streams.get(source)
        if stream is None:
            stream = self._streams[source] = _Stream()
        times: list[float] = frames["SessionTime"].astype(np.float64).tolist()
        laps: list[int] = frames["CarIdxLap"][:, car_idx].astype(np.int64).tolist()
        pcts: list[float] = (
            frames["CarIdxLapDistPct"][:, car_idx].astype(np.float64).tolist()
        )
        n = len(times)
        pits: list[bool] = (
            frames["CarIdxOnPitRoad"][:, car_idx].astype(bool).tolist()
            if "CarIdxOnPitRoad" in names
            else [False] * n
        )
        published: list[float] | None = (
            frames["CarIdxLastLapTime"][:, car_idx].astype(np.float64).tolist()
            if "CarIdxLastLapTime" in names
            else None
        )
        # Newer than this PC's newest, and the car in the world (-1: towed, garage).
        newest = stream.t
        keep = [
            i for i in range(n) if times[i] > newest and laps[i] >= 0 and pcts[i] >= 0.0
        ]
        if not keep:
            return []
        if len(keep) < n:
            times = [times[i] for i in keep]
            laps = [laps[i] for i in keep]
            pcts = [pcts[i] for i in keep]
            pits = [pits[i] for i in keep]
            if published is not None:
                published = [published[i] for i in keep]
        first = stream.lap if stream.lap is not None else laps[0]
        done: list[BridgedLap] = []
        pit = stream.pit
        crossings = self._crossings
        for i, lap in enumerate(laps):
            if lap == (laps[i - 1] if i else first):
                pit = pit or pits[i]
                continue
            prev_lap: int | None = laps[i - 1] if i else stream.lap
            prev_t = times[i - 1] if i else stream.t
            prev_pct = pcts[i - 1] if i else stream.pct
            t, pct = times[i], pcts[i]
            if (
                prev_lap is not None
                and lap == prev_lap + 1
                and prev_lap not in crossings
            ):
                crossing = t
                if prev_pct is not None and prev_pct > pct and t - prev_t < 1.0:
                    span = (1.0 - prev_pct) + pct
                    frac = (1.0 - prev_pct) / span if span > 0 else 1.0
                    crossing = prev_t + frac * (t - prev_t)
                started = crossings.get(prev_lap - 1)
                lap_time = crossing - started if started is not None else None
                if published is not None:
                    before = published[i - 1] if i else stream.published
                    # iRacing's own time, where it changed at this crossing.
                    if published[i] > 0 and published[i] != before:
                        lap_time = published[i]
                done.append(BridgedLap(prev_lap, crossing, lap_time, pit))
                crossings[prev_lap] = crossing
            # Else a crossing seen before (another PC, or this one again), or a jump
            # (a reset, a car first seen): no new lap.
            pit = pits[i]
        stream.pit = pit
        stream.lap, stream.pct, stream.t = laps[-1], pcts[-1], times[-1]
        if published is not None:
            stream.published = published[-1]
        if len(crossings) > self.KEEP_LAPS:
            for old in sorted(crossings)[: len(crossings) - self.KEEP_LAPS]:
                del crossings[old]
        return done


@dataclass(slots=True)
class _View:
    start: float
    end: float
    car_idx: int
    group: int | None


class CameraWatch:
    """What each PC out of the car was watching, as ``CameraView`` pieces.

    A piece ends when the car or camera group changes, when the PC gets in the car
    (its camera is then its own cockpit), after a gap of over a second, or when it
    is ``CAMERA_PIECE_S`` long. Per PC: frames older than its newest are skipped.
    """

    GAP_S = 1.0

    def __init__(self) -> None:
        self._views: dict[str, _View] = {}
        self._newest: dict[str, float] = {}

    def feed(self, source: str, frames: Frames) -> list[CameraView]:
        """The pieces ``frames`` of ``source`` completed."""
        names = frames.dtype.names or ()
        if "CamCarIdx" not in names or not len(frames):
            return []
        times: list[float] = frames["SessionTime"].astype(np.float64).tolist()
        cars: list[int] = frames["CamCarIdx"].astype(np.int64).tolist()
        groups: list[int] | None = (
            frames["CamGroupNumber"].astype(np.int64).tolist()
            if "CamGroupNumber" in names
            else None
        )
        out_of_car: list[bool] = (~in_car_mask(frames)).tolist()
        newest = self._newest.get(source, float("-inf"))
        view = self._views.get(source)
        done: list[CameraView] = []
        for i, t in enumerate(times):
            if t <= newest:
                continue
            newest = t
            watching = out_of_car[i] and cars[i] >= 0
            group = groups[i] if groups is not None else None
            if view is not None and (
                not watching
                or cars[i] != view.car_idx
                or group != view.group
                or t - view.end > self.GAP_S
                or t - view.start >= CAMERA_PIECE_S
            ):
                done.append(self._piece(source, view, t))
                view = None
            if watching and view is None:
                view = _View(t, t, cars[i], group)
            elif view is not None:
                view.end = t
        self._newest[source] = newest
        if view is None:
            self._views.pop(source, None)
        else:
            self._views[source] = view
        return done

    def flush(self) -> list[CameraView]:
        """Every PC's piece in progress (the stream ended)."""
        done = [self._piece(s, v, v.end) for s, v in sorted(self._views.items())]
        self._views.clear()
        return [piece for piece in done if piece.end > piece.start]

    def _piece(self, source: str, view: _View, next_t: float) -> CameraView:
        # A piece lasts to the next frame when it follows without a gap.
        end = next_t if next_t - view.end <= self.GAP_S else view.end
        return CameraView(
            source=source,
            start=view.start,
            end=end,
            car_idx=view.car_idx,
            group=view.group,
        )


def valid_time(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 0
