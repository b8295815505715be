"""Opponents from the CarIdx* arrays: pit cycles, stop kinds from duration, our rejoin position."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driver_pc.protocol.live import Rejoin
from pitbox_appliance.strategy.pit_loss import DEFAULT_SERVICE_BASE_S

# irsdk_TrkLoc: the car stands in its pit stall.
IN_PIT_STALL = 1
# A stop standing still for less than this is a drive-through (or a penalty pass).
DRIVE_THROUGH_MAX_S = 2.0
# Slack over the expected service time before a stop counts as longer for a reason.
TYRE_MARGIN_S = 2.0
REPAIR_MARGIN_S = 3.0
# Until our own stops have measured them: pit-lane transit and fuel flow.
DEFAULT_TRANSIT_S = 17.0
DEFAULT_FILL_RATE_LPS = 2.0
CLASS_PALETTE = ("#ffda59", "#33ceff", "#ff5888", "#ae6bff", "#53ff77", "#ff8c1a")

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True, slots=True)
class StopModel:
    """What a service costs in stationary time; thresholds of the stop kinds derive from it."""

    tank_l: float
    fuel_per_lap: float | None
    fill_rate_lps: float = DEFAULT_FILL_RATE_LPS
    tyre_change_s: float = 12.0
    transit_s: float = DEFAULT_TRANSIT_S
    base_s: float = DEFAULT_SERVICE_BASE_S


def classify_stop(
    stationary_s: float, expected_fuel_l: float | None, model: StopModel
) -> str:
    """``drive_through``, ``fuel``, ``tyres`` or ``repair`` from the stationary time.

    The expected refuel takes ``base + fuel / fill rate`` (a full tank when the fuel is
    not known). A stop longer than that by ``TYRE_MARGIN_S`` had tyres changed (the
    change takes ``tyre_change_s`` beside the fuel, so it shows only where it outlasts
    the refuel); one longer than ``base + max(refuel, tyre change)`` by
    ``REPAIR_MARGIN_S`` was a repair.
    """
    if stationary_s < DRIVE_THROUGH_MAX_S:
        return "drive_through"
    fuel_l = (
        model.tank_l if expected_fuel_l is None else min(model.tank_l, expected_fuel_l)
    )
    refuel = fuel_l / model.fill_rate_lps
    if stationary_s > model.base_s + max(refuel, model.tyre_change_s) + REPAIR_MARGIN_S:
        return "repair"
    if stationary_s > model.base_s + refuel + TYRE_MARGIN_S:
        return "tyres"
    return "fuel"


@dataclass(slots=True)
class CarStop:
    """One stop of a car as the arrays showed it."""

    lap: int
    entry_time: float
    exit_time: float
    duration_s: float
    stationary_s: float
    stint_laps: int | None
    kind: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "lap": self.lap,
            "duration_s": round(self.duration_s, 2),
            "kind": self.kind,
        }


@dataclass(slots=True)
class _Pending:
    entry_time: float
    entry_lap: int
    stall_at_entry: float


@dataclass
class FieldTracker:
    """Pit cycles of every car; ``feed`` is vectorised over the rows of a batch."""

    size: int = 64
    stops: dict[int, list[CarStop]] = field(default_factory=dict)
    out_lap: dict[int, int] = field(default_factory=dict)  # lap at the last pit exit
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _prev_on: np.ndarray[Any, np.dtype[np.bool_]] | None = None
    _prev_t: float | None = None
    _stall: FloatArray | None = None  # seconds in the stall so far, per car
    _seen_lap: dict[int, int] = field(default_factory=dict)
    closed: int = 0  # stops closed so far (``stops`` changed when this did)

    def feed(
        self,
        frames: np.ndarray[Any, np.dtype[np.void]],
        model: StopModel,
        laps_left: int | None = None,
    ) -> list[tuple[int, CarStop]]:
        """Track entries and exits in this batch; returns the stops that ended in it."""
        names = frames.dtype.names or ()
        if "CarIdxOnPitRoad" not in names or "CarIdxLap" not in names:
            return []
        on = np.asarray(frames["CarIdxOnPitRoad"]).astype(bool)
        n_cars = on.shape[1]
        if self._stall is None or self._stall.shape[0] != n_cars:
            self._stall = np.zeros(n_cars)
            self._prev_on = on[0].copy()
            self._prev_t = float(frames["SessionTime"][0])
        assert self._prev_on is not None
        if not self._prev_on.any() and not on.any():
            # Nobody on pit road: nothing to time (the common case at 60 Hz), and
            # nothing else of the batch is read.
            self._prev_t = float(frames["SessionTime"][-1])
            return []
        t = frames["SessionTime"].astype(np.float64)
        laps = np.asarray(frames["CarIdxLap"]).astype(np.int64)
        prev_t = self._prev_t if self._prev_t is not None else float(t[0])
        dt = np.empty_like(t)
        dt[0] = t[0] - prev_t
        dt[1:] = t[1:] - t[:-1]
        dt = np.clip(dt, 0.0, 1.0)  # a gap in the feed is not time in the stall
        if "CarIdxTrackSurface" in names:
            stall = np.asarray(frames["CarIdxTrackSurface"]) == IN_PIT_STALL
            cum = self._stall + np.cumsum(dt[:, None] * stall, axis=0)
        else:
            cum = np.broadcast_to(self._stall, on.shape)
        change = np.diff(
            np.vstack([self._prev_on[None, :], on]).astype(np.int8), axis=0
        )
        ended: list[tuple[int, CarStop]] = []
        rows, cars = np.nonzero(change)
        for r, c in zip(rows.tolist(), cars.tolist(), strict=True):
            if change[r, c] > 0:
                self._pending[c] = _Pending(
                    float(t[r]), int(laps[r, c]), float(cum[r, c])
                )
                continue
            pending = self._pending.pop(c, None)
            if pending is None:
                continue  # the car was on pit road when tracking began
            stop = self._close(
                c, pending, float(t[r]), float(cum[r, c]), model, laps_left
            )
            ended.append((c, stop))
            self.out_lap[c] = int(laps[r, c])
        self._stall = np.array(cum[-1], dtype=np.float64)
        self._prev_on = on[-1].copy()
        self._prev_t = float(t[-1])
        return ended

    def _close(
        self,
        car: int,
        pending: _Pending,
        exit_time: float,
        stall_now: float,
        model: StopModel,
        laps_left: int | None,
    ) -> CarStop:
        duration = exit_time - pending.entry_time
        stationary = stall_now - pending.stall_at_entry
        if stationary <= 0.0:
            # No stall channel: what the lane took beyond driving through it.
            stationary = max(0.0, duration - model.transit_s)
        since = self.out_lap.get(car)
        stint = pending.entry_lap - since if since is not None else None
        fuel: float | None = None
        if model.fuel_per_lap and stint is not None:
            fuel = (stint + 0.5) * model.fuel_per_lap
            if laps_left is not None:
                fuel = min(fuel, (laps_left + 1.5) * model.fuel_per_lap)
        stop = CarStop(
            pending.entry_lap,
            pending.entry_time,
            exit_time,
            duration,
            stationary,
            stint,
            classify_stop(stationary, fuel, model),
        )
        self.stops.setdefault(car, []).append(stop)
        self.closed += 1
        return stop


def class_color(raw: Any, class_order: int) -> str:
    """``#rrggbb`` from CarClassColor (``0xffda59`` text or an integer), else a palette entry."""
    value: int | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw, 16) if raw.lower().startswith("0x") else int(raw)
        except ValueError:
            value = None
    if value is not None and 0 <= value <= 0xFFFFFF:
        return f"#{value:06x}"
    return CLASS_PALETTE[class_order % len(CLASS_PALETTE)]


def progress(last: np.void, names: tuple[str, ...]) -> FloatArray:
    """Laps completed plus the fraction of the lap, per car; NaN where a slot is empty.

    ``CarIdxLap`` counts laps started (1 on the first timed lap), so completed laps are
    ``CarIdxLap − 1``.
    """
    pct = np.asarray(last["CarIdxLapDistPct"], dtype=np.float64)
    lap = (
        np.asarray(last["CarIdxLap"], dtype=np.float64)
        if "CarIdxLap" in names
        else np.zeros_like(pct)
    )
    out = lap - 1.0 + pct
    out[(pct < 0) | (lap < 0)] = np.nan  # empty slots read -1
    return out


def project_rejoin(
    prog: FloatArray,
    classes: np.ndarray[Any, np.dtype[np.int64]],
    our_idx: int,
    pit_loss_s: float,
    lap_time: float,
    numbers: dict[int, str],
) -> Rejoin | None:
    """Where we come out if we pit now: our progress less the pit loss, others as now.

    Positions count every car further round (laps + fraction); ``class_position``,
    gaps and the neighbours are within our class. Cars already in the pits keep their
    place (their remaining stop time is not known).
    """
    if not 0 <= our_idx < len(prog) or np.isnan(prog[our_idx]) or lap_time <= 0:
        return None
    ours = prog[our_idx] - pit_loss_s / lap_time
    others = np.ones(len(prog), dtype=bool)
    others[our_idx] = False
    others &= ~np.isnan(prog)
    ahead = others & (prog > ours)
    same = others & (classes == classes[our_idx])
    rel = (prog - ours) * lap_time
    in_class_ahead = same & ahead
    in_class_behind = same & ~ahead
    car_ahead = car_behind = None
    gap_ahead = gap_behind = None
    if in_class_ahead.any():
        i = int(np.flatnonzero(in_class_ahead)[np.argmin(rel[in_class_ahead])])
        car_ahead, gap_ahead = numbers.get(i, str(i)), round(float(rel[i]), 2)
    if in_class_behind.any():
        i = int(np.flatnonzero(in_class_behind)[np.argmax(rel[in_class_behind])])
        car_behind, gap_behind = numbers.get(i, str(i)), round(float(-rel[i]), 2)
    return Rejoin(
        position=int(ahead.sum()) + 1,
        class_position=int(in_class_ahead.sum()) + 1,
        gap_ahead_s=gap_ahead,
        gap_behind_s=gap_behind,
        car_ahead=car_ahead,
        car_behind=car_behind,
        loss_s=round(pit_loss_s, 2),
    )
