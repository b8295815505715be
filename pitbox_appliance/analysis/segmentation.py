"""Lap and stint segmentation of one car's tick stream: line crossings interpolated between ticks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# A tick gap longer than this (seconds of SessionTime) breaks the lap chain: the data
# between is missing, so the lap around it cannot be timed honestly.
MAX_TICK_GAP_S = 1.0
# LapDistPct must fall by at least this much in one tick to count as crossing the line
# (a reset or tow that moves the car backwards is smaller, or happens off the line).
WRAP_HIGH = 0.9
WRAP_LOW = 0.1


@dataclass(frozen=True, slots=True)
class CompletedLap:
    """A lap that ended at a line crossing. ``lap_time`` is None where it was not timed."""

    lap_number: int
    start_time: float | None
    end_time: float
    lap_time: float | None
    fuel_used: float | None
    pit_lap: bool
    max_speed: float | None


@dataclass(slots=True)
class _LapAccumulator:
    start_time: float | None = None
    start_clock: float | None = None
    start_fuel: float | None = None
    pit: bool = False
    max_speed: float = float("nan")


@dataclass(slots=True)
class LapSegmenter:
    """Turns consecutive ticks of one car into completed laps and pit-road transitions.

    Needs ``SessionTime`` and ``LapDistPct``; uses ``Lap``, ``FuelLevel``,
    ``OnPitRoad``, ``Speed`` and ``LapDist`` where present. Feed record arrays in time
    order.

    Lap times run on a corrected clock: iRacing sometimes stamps a tick two periods
    after the previous one although the car moved only one period's distance (seen in
    the Langley recordings, where it makes ``SessionTime`` differences one tick longer
    than iRacing's own ``LapLastLapTime``). Such a step counts as one period; a real
    dropped sample, where the car also moved twice as far, keeps its full length.
    """

    tick_rate: int = 60
    clock_glitches: int = 0
    _clock: float = 0.0
    _prev_dist: float | None = None
    _prev_t: float | None = None
    _prev_p: float | None = None
    _prev_lap: int | None = None
    _lap: _LapAccumulator = field(default_factory=_LapAccumulator)
    pit_entries: list[float] = field(default_factory=list)
    pit_exits: list[float] = field(default_factory=list)
    _prev_pit: bool | None = None

    def feed(self, frames: np.ndarray[Any, np.dtype[np.void]]) -> list[CompletedLap]:
        names = frames.dtype.names or ()
        t = frames["SessionTime"].astype(np.float64)
        p = frames["LapDistPct"].astype(np.float64)
        lap = frames["Lap"].astype(np.int64) if "Lap" in names else None
        fuel = frames["FuelLevel"].astype(np.float64) if "FuelLevel" in names else None
        pit = frames["OnPitRoad"].astype(bool) if "OnPitRoad" in names else None
        speed = frames["Speed"].astype(np.float64) if "Speed" in names else None
        dist = frames["LapDist"].astype(np.float64) if "LapDist" in names else None
        period = 1.0 / self.tick_rate
        done: list[CompletedLap] = []
        for i in range(len(t)):
            ti, pi = float(t[i]), float(p[i])
            if self._prev_t is not None and (
                ti <= self._prev_t or ti - self._prev_t > MAX_TICK_GAP_S
            ):
                # Time went backwards or data is missing: the current lap cannot be timed.
                self._lap = _LapAccumulator()
            elif self._prev_p is not None and self._prev_t is not None:
                step = ti - self._prev_t
                if (
                    1.5 * period < step < 2.5 * period
                    and dist is not None
                    and speed is not None
                ):
                    moved = float(dist[i]) - (self._prev_dist or 0.0)
                    one_tick = max(float(speed[i]) * period, 1e-3)
                    if 0.0 < moved < 1.5 * one_tick:
                        step = period
                        self.clock_glitches += 1
                if self._prev_p > WRAP_HIGH and pi < WRAP_LOW and pi > -0.5:
                    span = (1.0 - self._prev_p) + pi
                    frac = (1.0 - self._prev_p) / span if span > 0 else 1.0
                    number = self._prev_lap if self._prev_lap is not None else -1
                    done.append(
                        self._finish(
                            number,
                            self._prev_t + frac * (ti - self._prev_t),
                            self._clock + frac * step,
                            fuel,
                            i,
                        )
                    )
                self._clock += step
            if pit is not None:
                on_pit = bool(pit[i])
                if self._prev_pit is not None and on_pit != self._prev_pit:
                    (self.pit_entries if on_pit else self.pit_exits).append(ti)
                self._prev_pit = on_pit
                if on_pit:
                    self._lap.pit = True
            if speed is not None:
                s = float(speed[i])
                if not s <= self._lap.max_speed:
                    self._lap.max_speed = s
            self._prev_t, self._prev_p = ti, pi
            if dist is not None:
                self._prev_dist = float(dist[i])
            if lap is not None:
                self._prev_lap = int(lap[i])
        return done

    def _finish(
        self,
        number: int,
        crossing: float,
        clock: float,
        fuel: np.ndarray[Any, Any] | None,
        i: int,
    ) -> CompletedLap:
        acc = self._lap
        fuel_now = float(fuel[i]) if fuel is not None else None
        lap_time = clock - acc.start_clock if acc.start_clock is not None else None
        fuel_used = (
            acc.start_fuel - fuel_now
            if acc.start_fuel is not None and fuel_now is not None
            else None
        )
        result = CompletedLap(
            lap_number=number,
            start_time=acc.start_time,
            end_time=crossing,
            lap_time=lap_time,
            fuel_used=fuel_used,
            pit_lap=acc.pit,
            max_speed=None if np.isnan(acc.max_speed) else acc.max_speed,
        )
        self._lap = _LapAccumulator(
            start_time=crossing, start_clock=clock, start_fuel=fuel_now
        )
        return result
