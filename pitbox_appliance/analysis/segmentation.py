"""Lap and stint segmentation of one car's tick stream: line crossings interpolated between ticks."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# A tick gap longer than this (seconds of SessionTime) breaks the lap chain: the data
# between is missing, so the lap around it cannot be timed honestly.
MAX_TICK_GAP_S = 1.0
# LapDistPct must fall by at least this much in one tick to count as crossing the line
# (a reset or tow that moves the car backwards is smaller, or happens off the line).
WRAP_HIGH = 0.9
WRAP_LOW = 0.1
# A reset or tow puts the car back on pit road: iRacing's ``Lap`` drops (to 0 for one
# tick in the Langley recordings) and the car jumps. A step that moves it further
# along the track than twice its speed allows, plus this slack, is such a jump (on
# the real recordings and the simulator every driven step stays within the bound).
JUMP_SLACK_M = 5.0
# Without ``LapDist``: LapDistPct falling this much in one step, away from the line.
JUMP_BACK_PCT = 0.02
# iRacing publishes a lap's ``LapLastLapTime`` 0.5-1.9 s after the line (measured on
# the real recordings; -1 = no time, the lap is invalid). A completed lap waits for
# that verdict this long (SessionTime), then goes out with what is known.
VERDICT_WAIT_S = 3.0
# Fuel rising this much during a lap is refuelling (a stop, a reset to the pits):
# FuelLevel never rises while driving, in the recordings or the simulator.
REFUEL_MIN_L = 0.01


@dataclass(frozen=True, slots=True)
class CompletedLap:
    """A lap that ended at a line crossing. ``lap_time`` is None where it was not timed.

    ``invalid``: the car was reset or towed during the lap, or iRacing published no
    time for it (``LapLastLapTime`` -1); such a lap never has a time. ``refuelled``:
    fuel rose during the lap, so ``fuel_used`` is None (never negative).
    """

    lap_number: int
    start_time: float | None
    end_time: float
    lap_time: float | None
    fuel_used: float | None
    pit_lap: bool
    max_speed: float | None
    invalid: bool = False
    refuelled: bool = False


@dataclass(slots=True)
class _LapAccumulator:
    start_time: float | None = None
    start_clock: float | None = None
    start_fuel: float | None = None
    pit: bool = False
    max_speed: float = float("nan")
    reset: bool = False  # the car was reset or towed during the lap
    fuel_added: float = 0.0  # litres the fuel level rose by during the lap


@dataclass(frozen=True, slots=True)
class _Pending:
    """A completed lap waiting for iRacing's ``LapLastLapTime`` verdict."""

    lap: CompletedLap  # with the time we measured, invalid only if we saw a reset
    measured: float | None  # our time, even of a lap we saw reset
    before: float  # LapLastLapTime just before the line
    deadline: float  # SessionTime to stop waiting at


@dataclass(slots=True)
class LapSegmenter:
    """Turns consecutive ticks of one car into completed laps and pit-road transitions.

    Needs ``SessionTime`` and ``LapDistPct``; uses ``Lap``, ``FuelLevel``,
    ``OnPitRoad``, ``Speed``, ``LapDist`` and ``LapLastLapTime`` where present. Feed
    record arrays in time order.

    Lap times run on a corrected clock: iRacing sometimes stamps a tick two periods
    after the previous one although the car moved only one period's distance (seen in
    the Langley recordings, where it makes ``SessionTime`` differences one tick longer
    than iRacing's own ``LapLastLapTime``). Such a step counts as one period; a real
    dropped sample, where the car also moved twice as far, keeps its full length.

    A reset or tow (``Lap`` drops, or the car jumps) makes the lap in progress invalid,
    and a line "crossing" it causes is none. With ``LapLastLapTime`` a completed lap
    is handed out once iRacing published its time (or after ``VERDICT_WAIT_S``):
    -1 makes it invalid, as iRacing has it; ``flush`` hands out one still waiting.
    """

    tick_rate: int = 60
    clock_glitches: int = 0
    _clock: float = 0.0
    _prev_dist: float | None = None
    _prev_t: float | None = None
    _prev_p: float | None = None
    _prev_lap: int | None = None
    _prev_speed: float = 0.0
    _prev_fuel: float | None = None
    _prev_llt: float | None = None
    _lap: _LapAccumulator = field(default_factory=_LapAccumulator)
    _pending: _Pending | None = None
    pit_entries: list[float] = field(default_factory=list)
    pit_exits: list[float] = field(default_factory=list)
    _prev_pit: bool | None = None
    _pit_change_at: float | None = None  # after a continued gap: when it began
    # Set by ``continue_lap``: the start (and pit flag) of the lap the next frame is in.
    _continued: tuple[float, bool] | None = None

    def feed(self, frames: np.ndarray[Any, np.dtype[np.void]]) -> list[CompletedLap]:
        # The columns as Python numbers once (the same values ``float(col[i])`` gave):
        # the walk below is per frame, and a numpy scalar per access cost more.
        names = frames.dtype.names or ()
        t = _floats(frames, "SessionTime")
        p = _floats(frames, "LapDistPct")
        lap: list[int] | None = (
            frames["Lap"].astype(np.int64).tolist() if "Lap" in names else None
        )
        fuel = _floats(frames, "FuelLevel") if "FuelLevel" in names else None
        pit: list[bool] | None = (
            frames["OnPitRoad"].astype(bool).tolist() if "OnPitRoad" in names else None
        )
        speed = _floats(frames, "Speed") if "Speed" in names else None
        dist = _floats(frames, "LapDist") if "LapDist" in names else None
        llt = _floats(frames, "LapLastLapTime") if "LapLastLapTime" in names else None
        period = 1.0 / self.tick_rate
        done: list[CompletedLap] = []
        for i in range(len(t)):
            ti, pi = t[i], p[i]
            if self._continued is not None:
                start, was_pit = self._continued
                self._continued = None
                self._lap = _LapAccumulator(
                    start_time=start,
                    start_clock=self._clock - (ti - start),
                    pit=was_pit,
                )
            rise = 0.0
            if fuel is not None:
                level = fuel[i]
                if self._prev_fuel is not None and level > self._prev_fuel:
                    rise = level - self._prev_fuel
                    self._lap.fuel_added += rise
                self._prev_fuel = level
            if self._prev_t is not None and (
                ti <= self._prev_t or ti - self._prev_t > MAX_TICK_GAP_S
            ):
                # Time went backwards or data is missing: the current lap cannot be
                # timed, and a lap waiting for iRacing's verdict will not get it.
                self._lap = _LapAccumulator(fuel_added=rise)
                if self._pending is not None:
                    done.append(self._release(None))
            elif self._prev_p is not None and self._prev_t is not None:
                step = ti - self._prev_t
                wrapped = self._prev_p > WRAP_HIGH and pi < WRAP_LOW and pi > -0.5
                moved = None
                if (
                    dist is not None
                    and speed is not None
                    and self._prev_dist is not None
                ):
                    moved = dist[i] - self._prev_dist
                    if 1.5 * period < step < 2.5 * period:
                        one_tick = max(speed[i] * period, 1e-3)
                        if 0.0 < moved < 1.5 * one_tick:
                            step = period
                            self.clock_glitches += 1
                    if wrapped:
                        # LapDist restarts at the line: the lap's length is the rest.
                        moved += self._prev_dist / self._prev_p
                jumped = self._jumped(
                    lap[i] if lap is not None else None,
                    pi,
                    wrapped,
                    moved,
                    speed[i] if speed is not None else 0.0,
                    ti - self._prev_t,
                )
                if jumped:
                    # A reset or tow: the lap it happens in is no lap, and a line
                    # "crossing" it causes is none.
                    self._lap.reset = True
                elif wrapped:
                    span = (1.0 - self._prev_p) + pi
                    frac = (1.0 - self._prev_p) / span if span > 0 else 1.0
                    number = self._prev_lap if self._prev_lap is not None else -1
                    if self._pending is not None:
                        done.append(self._release(None))
                    finished, measured = self._finish(
                        number,
                        self._prev_t + frac * (ti - self._prev_t),
                        self._clock + frac * step,
                        fuel,
                        i,
                    )
                    if llt is None or self._prev_llt is None:
                        done.append(finished)
                    else:
                        self._pending = _Pending(
                            finished,
                            measured,
                            self._prev_llt,
                            finished.end_time + VERDICT_WAIT_S,
                        )
                self._clock += step
            if llt is not None:
                published = llt[i]
                pending = self._pending
                if pending is not None:
                    if published != pending.before:
                        done.append(self._release(published > 0.0))
                    elif ti >= pending.deadline:
                        # Nothing new: still -1 is iRacing's verdict; an unchanged
                        # time is none (the sim did not publish this lap).
                        done.append(self._release(False if published <= 0 else None))
                self._prev_llt = published
            if pit is not None:
                on_pit = pit[i]
                if self._prev_pit is not None and on_pit != self._prev_pit:
                    at = ti if self._pit_change_at is None else self._pit_change_at
                    (self.pit_entries if on_pit else self.pit_exits).append(at)
                self._prev_pit = on_pit
                self._pit_change_at = None
                if on_pit:
                    self._lap.pit = True
            if speed is not None:
                s = speed[i]
                if not s <= self._lap.max_speed:
                    self._lap.max_speed = s
                self._prev_speed = s
            self._prev_t, self._prev_p = ti, pi
            if dist is not None:
                self._prev_dist = dist[i]
            if lap is not None:
                self._prev_lap = lap[i]
        return done

    def flush(self) -> list[CompletedLap]:
        """The lap still waiting for iRacing's verdict (at the end of a stream), if any."""
        return [self._release(None)] if self._pending is not None else []

    @property
    def lap_start(self) -> float | None:
        """When the lap in progress began (None: not known, it will not be timed)."""
        return self._lap.start_time

    @property
    def lap_number(self) -> int | None:
        """The ``Lap`` of the newest frame fed (None: no frame, or no ``Lap`` channel)."""
        return self._prev_lap

    @property
    def pending_lap(self) -> int | None:
        """The completed lap still waiting for iRacing's verdict, if any."""
        return self._pending.lap.lap_number if self._pending is not None else None

    def continue_lap(self, start_time: float | None, pit: bool = False) -> None:
        """The frames before the next one are missing, but the lap it is in is known.

        Another source (the ``CarIdx*`` arrays of a teammate's PC) saw the car cross
        the line at ``start_time``: the lap in progress is timed from there, not
        dropped as the gap would otherwise make it. None: untimed, as after any gap.
        """
        # The pit-road state before the gap stays: a change across the gap happened
        # in it, and is dated at its start (the car was still where it was before).
        # Cleared, a pit entry in the gap was lost, and the stop's stint with it.
        self._pit_change_at = self._prev_t
        self._prev_t = self._prev_p = self._prev_dist = None
        if start_time is None:
            self._lap = _LapAccumulator()
        else:
            self._continued = (start_time, pit)

    def _jumped(
        self,
        lap_now: int | None,
        pct: float,
        wrapped: bool,
        moved: float | None,
        speed: float,
        dt: float,
    ) -> bool:
        """Whether the car was reset or towed between the previous tick and this one."""
        if lap_now is not None and self._prev_lap is not None:
            if lap_now < self._prev_lap:
                return True  # iRacing's lap count dropped: a reset
            if wrapped and lap_now > self._prev_lap:
                return False  # iRacing counted the crossing
        if moved is not None:
            reach = 2.0 * max(speed, self._prev_speed) * dt + JUMP_SLACK_M
            return abs(moved) > reach
        assert self._prev_p is not None
        return not wrapped and pct < self._prev_p - JUMP_BACK_PCT

    def _finish(
        self,
        number: int,
        crossing: float,
        clock: float,
        fuel: list[float] | None,
        i: int,
    ) -> tuple[CompletedLap, float | None]:
        """The lap ending at ``crossing`` (and its measured time); starts the next one."""
        acc = self._lap
        fuel_now = fuel[i] if fuel is not None else None
        measured = clock - acc.start_clock if acc.start_clock is not None else None
        fuel_used = (
            acc.start_fuel - fuel_now
            if acc.start_fuel is not None and fuel_now is not None
            else None
        )
        refuelled = acc.fuel_added > REFUEL_MIN_L or (
            fuel_used is not None and fuel_used < 0.0
        )
        result = CompletedLap(
            lap_number=number,
            start_time=acc.start_time,
            end_time=crossing,
            lap_time=None if acc.reset else measured,
            fuel_used=None if refuelled else fuel_used,
            pit_lap=acc.pit,
            max_speed=None if np.isnan(acc.max_speed) else acc.max_speed,
            invalid=acc.reset,
            refuelled=refuelled,
        )
        self._lap = _LapAccumulator(
            start_time=crossing, start_clock=clock, start_fuel=fuel_now
        )
        return result, measured

    def _release(self, iracing_timed: bool | None) -> CompletedLap:
        """Hand out the waiting lap with iRacing's verdict (None: it gave none).

        iRacing's verdict wins where it gave one; else a reset we saw decides.
        """
        pending = self._pending
        assert pending is not None
        self._pending = None
        lap = pending.lap
        invalid = lap.invalid if iracing_timed is None else not iracing_timed
        return replace(
            lap, invalid=invalid, lap_time=None if invalid else pending.measured
        )


def _floats(frames: np.ndarray[Any, np.dtype[np.void]], name: str) -> list[float]:
    """A column as Python floats (float64 first, as ``float()`` of each would give)."""
    values: list[float] = frames[name].astype(np.float64).tolist()
    return values
