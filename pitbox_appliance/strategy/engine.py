"""The live strategy engine of one car: fed per batch and per lap by the core's ingest."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from driver_pc.protocol.live import OtherCar, Rejoin, StrategySnapshot
from pitbox_appliance.strategy.drivers import swap_advice
from pitbox_appliance.strategy.fuel import (
    LapFuel,
    RaceLength,
    green_fuel_laps,
    plan_fuel,
    race_length,
    tank_capacity,
)
from pitbox_appliance.strategy.opponents import (
    CLASS_PALETTE,
    DEFAULT_FILL_RATE_LPS,
    IN_PIT_STALL,
    CarStop,
    FieldTracker,
    StopModel,
    class_color,
    progress,
    project_rejoin,
)
from pitbox_appliance.strategy.pit_loss import (
    DEFAULT_SERVICE_BASE_S,
    OurStop,
    PitLoss,
    learn_pit_loss,
)
from pitbox_appliance.strategy.plan import PlanInput, recommendation, stint_plan
from pitbox_appliance.strategy.race import race_state
from pitbox_appliance.strategy.settings import StrategySettings
from pitbox_appliance.strategy.tyres import TyreLap, degradation_slope, tyre_advice

# pyirsdk Flags caution and caution_waving: a full-course yellow. The plain yellow bits
# (0x8, 0x100) are also local yellows, which barely change fuel use.
YELLOW_FLAGS = 0x4000 | 0x8000
# The opponents' view (others, rejoin) is rebuilt at most this often (s of SessionTime).
FIELD_INTERVAL_S = 0.25
STATIONARY_SPEED = 0.5  # m/s
WEAR_CHANNELS = tuple(f"{c}wear{s}" for c in ("LF", "RF", "LR", "RR") for s in "LMR")
# What the engine reads of each batch beyond the core's own live channels.
STRATEGY_CHANNELS = (
    "CarIdxLap",
    "CarIdxClassPosition",
    "CarIdxClass",
    "CarIdxTrackSurface",
    "CarIdxLastLapTime",
    "CarIdxBestLapTime",
    "SessionFlags",
    "SessionNum",
    "SessionTimeRemain",
    "PlayerCarInPitStall",
    "PlayerTrackSurface",
    "PitRepairLeft",
    "PitOptRepairLeft",
    *WEAR_CHANNELS,
)


class OthersView:
    """The other cars as of one refresh of the field (at most 4 Hz), built on first use.

    ``rows`` are plain dicts in the wire shape of ``OtherCar``, ``cars`` the typed
    models (~0.15 ms for 63). Both are made only when the view is read, i.e. when the
    core publishes it: a replay or an import refreshes the field far more often than
    anything is published, and at real time the core publishes each refresh once.
    The view is given the rows, or a function that makes them from what it captured
    at the refresh.
    """

    __slots__ = ("_cars", "_make", "_rows")

    def __init__(
        self, rows: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]]
    ) -> None:
        self._rows = rows if isinstance(rows, list) else None
        self._make = None if isinstance(rows, list) else rows
        self._cars: tuple[OtherCar, ...] | None = None

    @property
    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            assert self._make is not None
            self._rows, self._make = self._make(), None
        return self._rows

    @property
    def cars(self) -> tuple[OtherCar, ...]:
        if self._cars is None:
            self._cars = _OTHER_CARS.validate_python(self.rows)
        return self._cars


_OTHER_CARS = TypeAdapter(tuple[OtherCar, ...])
NO_OTHERS = OthersView([])


class StrategyEngine:
    """Everything the strategy knows of one car's race; see docs/strategy.md.

    Built with the team's rules (config ``strategy``) and, when the core restarts
    mid-session, the laps it had already stored; race length, tank, car numbers and
    classes come with the session info.
    """

    def __init__(
        self, settings: StrategySettings | None = None, laps: Iterable[LapFuel] = ()
    ) -> None:
        self.settings = settings if settings is not None else StrategySettings()
        self.race = RaceLength()
        self.tank: float | None = None
        self.numbers: dict[int, str] = {}
        self.class_of: dict[int, int] = {}
        self.color_of: dict[int, str] = {}
        self.laps: list[LapFuel] = list(laps)
        self.stops: list[OurStop] = []
        self.history: list[dict[str, Any]] = []
        self.field_tracker = FieldTracker()
        self.fatigue: float | None = None
        self.drive_time_s: dict[str, float] = {}
        self.stint_s = 0.0
        self.stint_start_lap = 1
        self.tyre_laps: list[TyreLap] = []
        self.tyre_age = 0
        self.max_fuel_seen = 0.0
        self.pit_loss: PitLoss | None = None
        self.rejoin: Rejoin | None = None
        self.last_action: str | None = None
        self.tyre_state: str | None = None
        self._model: StopModel | None = None  # refreshed once per lap
        self._classes_stale = True  # the session info changed the classes
        self._info: dict[str, Any] = {}
        self._stop_cost = self.settings.default_pit_loss_s  # a stop now, priced
        self._session_num = 0
        self._driver: str | None = None
        self._yellows: list[tuple[float, float]] = []  # FCY spans
        self._on_pit: bool | None = None
        self._prev_fuel: float | None = None
        self._prev_wear: float | None = None
        self._field_at = float("-inf")
        self._prev_t: float | None = None
        self._progress: np.ndarray[Any, np.dtype[np.float64]] | None = None
        self._player = -1
        self._lap_now = 0
        self._classes: np.ndarray[Any, np.dtype[np.int64]] | None = None
        self._last_row: np.void | None = None
        self._names: tuple[str, ...] = ()
        # Car numbers and class colours as of the last session info (copies: a view
        # of the field built later shows them as they were at its refresh).
        self._entries: tuple[dict[int, str], dict[int, str]] = ({}, {})
        # The field's stops as of the last refresh, and how many had closed then.
        self._stops_now: tuple[dict[int, tuple[int, CarStop]], dict[int, int]] = (
            {},
            {},
        )
        self._stops_seen = 0

    # ---- inputs ------------------------------------------------------------------------
    def session_info(self, info: dict[str, Any]) -> None:
        """Race length, tank, car numbers, classes and class colours."""
        self._info = info
        self.race = race_length(info, self._session_num)
        self._classes_stale = True
        self.tank = tank_capacity(info)
        order: list[int] = []
        for entry in (info.get("DriverInfo") or {}).get("Drivers") or []:
            if not isinstance(entry, dict) or not isinstance(entry.get("CarIdx"), int):
                continue
            idx = entry["CarIdx"]
            self.numbers[idx] = str(entry.get("CarNumber") or idx)
            cid = entry.get("CarClassID")
            if isinstance(cid, int):
                self.class_of[idx] = cid
                if cid not in order:
                    order.append(cid)
                self.color_of.setdefault(
                    cid, class_color(entry.get("CarClassColor"), order.index(cid))
                )
        self._entries = (dict(self.numbers), dict(self.color_of))

    def note_fatigue(self, level: float) -> None:
        """The latest fatigue of the driver in the car (driver_fatigue_update)."""
        self.fatigue = level

    def on_batch(self, frames: np.ndarray[Any, np.dtype[np.void]]) -> OthersView | None:
        """Our stops and the field's pit cycles; the other cars when they are due (≤ 4 Hz)."""
        names = frames.dtype.names or ()
        t = frames["SessionTime"].astype(np.float64)
        if "FuelLevel" in names:
            self.max_fuel_seen = max(
                self.max_fuel_seen, float(frames["FuelLevel"].max())
            )
        if "SessionNum" in names:
            num = int(frames["SessionNum"][-1])
            if num != self._session_num:
                # Practice, qualifying and race are sessions of one feed: the race
                # length is that of the session running now.
                self._session_num = num
                self.race = race_length(self._info, num)
        if "SessionFlags" in names:
            flags = np.asarray(frames["SessionFlags"]).astype(np.int64)
            yellow = (flags & YELLOW_FLAGS) != 0
            if yellow.any():
                span = (float(t[yellow].min()), float(t[yellow].max()))
                if self._yellows and span[0] - self._yellows[-1][1] < 1.0:
                    span = (self._yellows.pop()[0], span[1])
                self._yellows.append(span)
        if "OnPitRoad" in names:
            self._our_pit(frames, names, t)
        self._last_row, self._names = frames[-1], names
        self._prev_t = float(t[-1])
        if "CarIdxLapDistPct" not in names:
            return None
        if self._model is None:
            self._model = self._stop_model()
        self.field_tracker.feed(frames, self._model, self._laps_left())
        if float(t[-1]) < self._field_at + FIELD_INTERVAL_S:
            return None
        self._field_at = float(t[-1])
        return self._field(frames[-1], names)

    def on_lap(
        self,
        number: int,
        lap_time: float | None,
        fuel_used: float | None,
        pit: bool,
        end_time: float,
        fuel_level: float | None,
        driver: str,
        *,
        invalid: bool = False,
        refuelled: bool = False,
    ) -> tuple[StrategySnapshot, StrategySnapshot | None]:
        """The whole strategy after a lap; the second value is set when the advice changed.

        An ``invalid`` (reset, towed) or ``refuelled`` lap never counts for fuel per lap.
        """
        start = end_time - lap_time if lap_time is not None else end_time
        yellow = any(a <= end_time and b >= start for a, b in self._yellows)
        self._yellows = [y for y in self._yellows if y[1] >= end_time - 600.0]
        after_pit = bool(self.laps) and self.laps[-1].pit
        self.laps.append(
            LapFuel(number, lap_time, fuel_used, pit, yellow, invalid, refuelled)
        )
        self._lap_now = number
        if driver != self._driver:
            self._driver, self.stint_s = driver, 0.0
        if lap_time is not None:
            self.stint_s += lap_time
            self.drive_time_s[driver] = self.drive_time_s.get(driver, 0.0) + lap_time
        self.tyre_age += 1
        if not (pit or after_pit or yellow) and lap_time is not None:
            start_fuel = (
                fuel_level + fuel_used
                if fuel_level is not None and fuel_used is not None
                else None
            )
            self.tyre_laps.append(TyreLap(self.tyre_age, lap_time, start_fuel))
        return self._plan(number, end_time, fuel_level, driver)

    # ---- our car ---------------------------------------------------------------------
    def _our_pit(
        self,
        frames: np.ndarray[Any, np.dtype[np.void]],
        names: tuple[str, ...],
        t: np.ndarray[Any, np.dtype[np.float64]],
    ) -> None:
        on = np.asarray(frames["OnPitRoad"]).astype(bool)
        prev = self._on_pit if self._on_pit is not None else bool(on[0])
        self._on_pit = prev
        if not prev and not on.any():
            return  # on track all batch: nothing to measure (the common case)
        edges = np.flatnonzero(np.diff(np.concatenate([[prev], on]).astype(np.int8)))
        fuel = frames["FuelLevel"].astype(np.float64) if "FuelLevel" in names else None
        wear = (
            np.min(np.column_stack([frames[w] for w in WEAR_CHANNELS]), axis=1)
            if all(w in names for w in WEAR_CHANNELS)
            else None
        )
        start = 0
        for cut in [*edges.tolist(), len(on)]:
            if cut > start and self._on_pit and self.stops:
                self._service(frames, names, t, fuel, wear, start, cut)
            if cut < len(on):
                if on[cut]:
                    lap = int(frames["Lap"][cut]) if "Lap" in names else self._lap_now
                    self.stops.append(OurStop(float(t[cut]), lap=lap))
                    self._prev_fuel = float(fuel[cut]) if fuel is not None else None
                    self._prev_wear = float(wear[cut]) if wear is not None else None
                elif self.stops and self.stops[-1].exit_time is None:
                    self._close_stop(float(t[cut]), frames, names, cut)
                self._on_pit = bool(on[cut])
            start = cut
        self._on_pit = bool(on[-1])

    def _service(
        self,
        frames: np.ndarray[Any, np.dtype[np.void]],
        names: tuple[str, ...],
        t: np.ndarray[Any, np.dtype[np.float64]],
        fuel: np.ndarray[Any, np.dtype[np.float64]] | None,
        wear: np.ndarray[Any, np.dtype[np.float64]] | None,
        a: int,
        b: int,
    ) -> None:
        """Stationary time, fuel added and tyre change of rows a..b spent on pit road."""
        stop = self.stops[-1]
        before = t[a - 1] if a else (self._prev_t if self._prev_t is not None else t[0])
        dt = np.clip(np.diff(t[a:b], prepend=before), 0.0, 1.0)
        if "PlayerTrackSurface" in names:  # irsdk_TrkLoc 1: in the pit stall
            still = np.asarray(frames["PlayerTrackSurface"][a:b]) == IN_PIT_STALL
        elif "PlayerCarInPitStall" in names:
            still = np.asarray(frames["PlayerCarInPitStall"][a:b]).astype(bool)
        elif "Speed" in names:
            still = np.asarray(frames["Speed"][a:b]) < STATIONARY_SPEED
        else:
            still = np.zeros(b - a, dtype=bool)
        stop.stationary_s += float(np.sum(dt * still))
        for name in ("PitRepairLeft", "PitOptRepairLeft"):
            if name in names and float(np.max(frames[name][a:b])) > 0:
                stop.repair = True
        if fuel is not None:
            seg = fuel[a:b]
            before = self._prev_fuel if self._prev_fuel is not None else float(seg[0])
            stop.fuel_added_l += float(
                np.clip(np.diff(seg, prepend=before), 0, None).sum()
            )
            self._prev_fuel = float(seg[-1])
        if wear is not None:
            seg_w = wear[a:b]
            if (
                self._prev_wear is not None
                and float(seg_w.max()) > self._prev_wear + 0.02
            ):
                stop.tyres = True
            elif stop.tyres is None:
                stop.tyres = False
            self._prev_wear = float(seg_w[-1])

    def _close_stop(
        self,
        exit_time: float,
        frames: np.ndarray[Any, np.dtype[np.void]],
        names: tuple[str, ...],
        row: int,
    ) -> None:
        stop = self.stops[-1]
        stop.exit_time = exit_time
        out_lap = int(frames["Lap"][row]) if "Lap" in names else self._lap_now + 1
        self.history.append(
            {
                "stint": len(self.history) + 1,
                "start_lap": self.stint_start_lap,
                "end_lap": stop.lap,
                "fuel_to_add": round(stop.fuel_added_l, 2),
                "tyres": bool(stop.tyres),
                "driver": self._driver,
                "done": True,
            }
        )
        self.stint_start_lap = out_lap
        if stop.tyres:
            self.tyre_age, self.tyre_laps = 0, []

    # ---- the field ---------------------------------------------------------------------
    def _stop_model(self) -> StopModel:
        loss = self.pit_loss
        green = self._green_fuel()
        return StopModel(
            tank_l=self.tank or self.max_fuel_seen or 100.0,
            fuel_per_lap=green,
            fill_rate_lps=(loss.fill_rate_lps if loss and loss.fill_rate_lps else 2.0),
            tyre_change_s=self.settings.tyre_change_s,
            transit_s=(loss.transit_s if loss and loss.transit_s else 17.0),
        )

    def _green_fuel(self) -> float | None:
        green = green_fuel_laps(self.laps[-30:])
        return (
            statistics.median(g.fuel_used for g in green if g.fuel_used)
            if green
            else None
        )

    def _laps_left(self) -> int | None:
        if self.race.laps is None:
            return None
        return max(0, self.race.laps - self._lap_now)

    def _field(self, last: np.void, names: tuple[str, ...]) -> OthersView:
        prog = progress(last, names)
        n = len(prog)
        player = int(last["PlayerCarIdx"]) if "PlayerCarIdx" in names else -1
        self._progress, self._player = prog, player
        if self._classes is None or len(self._classes) != n or self._classes_stale:
            if "CarIdxClass" in names and not self.class_of:
                self._classes = np.asarray(last["CarIdxClass"]).astype(np.int64)
            else:
                self._classes = np.array(
                    [self.class_of.get(i, -1) for i in range(n)], dtype=np.int64
                )
            self._classes_stale = False
        classes = self._classes
        lap_time = self._lap_time()
        if lap_time and 0 <= player < n:
            loss = self._stop_cost
            self.rejoin = project_rejoin(
                prog, classes, player, loss, lap_time, self.numbers
            )
        if self._stops_seen != self.field_tracker.closed:
            # Stops of the field as of now (the tracker goes on appending).
            self._stops_seen = self.field_tracker.closed
            self._stops_now = (
                {i: (len(s), s[-1]) for i, s in self.field_tracker.stops.items() if s},
                dict(self.field_tracker.out_lap),
            )
        # The arrays as of this row, for the rows built when the view is read.
        columns: dict[str, np.ndarray[Any, Any]] = {
            name: np.array(last[name])
            for name in (
                "CarIdxPosition",
                "CarIdxClassPosition",
                "CarIdxOnPitRoad",
                "CarIdxLap",
                "CarIdxLapDistPct",
            )
            if name in names
        }
        return OthersView(
            partial(
                _other_rows,
                columns,
                prog,
                player,
                classes,
                self._stops_now,
                self._entries,
            )
        )

    def _lap_time(self) -> float | None:
        times = [
            lap.lap_time
            for lap in self.laps[-10:]
            if lap.lap_time and not lap.pit and not lap.yellow
        ]
        return statistics.median(times) if times else None

    # ---- the plan ----------------------------------------------------------------------
    def _plan(
        self, number: int, end_time: float, fuel_level: float | None, driver: str
    ) -> tuple[StrategySnapshot, StrategySnapshot | None]:
        s = self.settings
        self.pit_loss = learn_pit_loss(self.laps, self.stops, s.default_pit_loss_s)
        self._model = self._stop_model()
        lap_time = self._lap_time()
        ours = float(number)
        leader: float | None = None
        leader_time: float | None = None
        time_left: float | None = None
        names, last = self._names, self._last_row
        if self._progress is not None and 0 <= self._player < len(self._progress):
            # The arrays are from the batch of our line crossing (or one ≤ 0.25 s
            # older): the leader's gap to us from them; ours is the lap just completed.
            prog = self._progress
            if not np.isnan(prog[self._player]) and not np.all(np.isnan(prog)):
                lead = int(np.nanargmax(prog))
                leader = ours + max(0.0, float(prog[lead] - prog[self._player]))
                leader_time = lap_time * self._pace_ratio(lead) if lap_time else None
        if last is not None and "SessionTimeRemain" in names:
            remain = float(last["SessionTimeRemain"])
            time_left = remain if remain >= 0 else None
        race = race_state(
            self.race, ours, leader, end_time, lap_time, leader_time, time_left
        )
        tank = self.tank or (self.max_fuel_seen or None)
        fuel = plan_fuel(
            self.laps,
            fuel_level=fuel_level,
            tank_capacity=tank,
            race=self.race,
            laps_completed=number,
            elapsed_s=end_time,
            laps_left=race.laps_left,
        )
        next_stint = None
        change_cost = s.tyre_change_s
        if fuel.stops_needed and fuel.fuel_per_lap and tank and race.laps_left:
            # Tyres ride on a planned stop: the change costs its own time only.
            left_after = race.laps_left - int(fuel.laps_of_fuel or 0)
            next_stint = min(max(0, left_after), int(tank / fuel.fuel_per_lap))
        elif race.laps_left:
            # No stop planned: new tyres cost a whole extra stop.
            next_stint = race.laps_left
            drive = self.pit_loss.drive_through_s or s.default_pit_loss_s / 2
            change_cost = drive + DEFAULT_SERVICE_BASE_S + s.tyre_change_s
        tyres = tyre_advice(
            self.tyre_laps,
            self.tyre_age,
            next_stint,
            change_cost,
            s.fuel_s_per_l,
            self.tyre_state,
        )
        self.tyre_state = tyres.advice
        race_left_s = (
            race.laps_left * lap_time
            if race.laps_left is not None and lap_time
            else None
        )
        swap = swap_advice(
            driver, self.stint_s, self.drive_time_s, race_left_s, self.fatigue, s
        )
        plan = stint_plan(
            PlanInput(
                stint=len(self.history) + 1,
                stint_start_lap=self.stint_start_lap,
                lap=number,
                laps_left=race.laps_left,
                fuel_level=fuel_level,
                fuel_per_lap=fuel.fuel_per_lap,
                tank=tank,
                lap_time=lap_time,
                tyre_age=self.tyre_age,
                tyre_slope=degradation_slope(self.tyre_laps, s.fuel_s_per_l),
                driver=driver,
                drive_time_s=self.drive_time_s,
            ),
            self.history,
            s,
        )
        advice = recommendation(number, fuel, tyres, swap)
        self._stop_cost = self._price_stop(fuel.fuel_to_add, tyres.advice == "change")
        strategy = StrategySnapshot.model_validate(
            {
                **fuel.as_dict(),
                "race": race.as_dict(),
                "pit_loss_s": round(self.pit_loss.s, 2),
                "pit_loss": self.pit_loss.as_dict(),
                "tyres": tyres.as_dict(),
                "driver_swap": swap.as_dict(),
                "stint_plan": plan,
                "rejoin": self.rejoin,
                "recommendation": advice,
            }
        )
        # Advice is news when its action changes, once the fuel plan is known.
        changed = fuel.stops_needed is not None and advice["action"] != self.last_action
        if fuel.stops_needed is not None:
            self.last_action = advice["action"]
        return strategy, (strategy if changed else None)

    def _price_stop(self, fuel_l: float | None, tyres: bool) -> float:
        """What a stop now costs: the learned drive-through + this stop's service.

        Service = 4 s + the longer of the refuel (at the learned fill rate) and the tyre
        change if tyres are due; the learned median loss where the parts are unknown.
        """
        loss = self.pit_loss
        if loss is None or loss.drive_through_s is None:
            return loss.s if loss else self.settings.default_pit_loss_s
        rate = loss.fill_rate_lps or DEFAULT_FILL_RATE_LPS
        refuel = (fuel_l or 0.0) / rate
        change = self.settings.tyre_change_s if tyres else 0.0
        return loss.drive_through_s + DEFAULT_SERVICE_BASE_S + max(refuel, change)

    def _pace_ratio(self, car: int) -> float:
        """The class pace of ``car`` over ours: median ``CarIdxBestLapTime`` per class.

        Best laps are untouched by yellows and pit laps, which make the last laps of a
        class useless as a pace for a few laps at a time; 1.0 when not known.
        """
        last, player, classes = self._last_row, self._player, self._classes
        if last is None or "CarIdxBestLapTime" not in self._names or classes is None:
            return 1.0
        if not 0 <= player < len(classes) or classes[car] == classes[player]:
            return 1.0
        best = np.asarray(last["CarIdxBestLapTime"], dtype=np.float64)
        theirs = best[(classes == classes[car]) & (best > 0)]
        ours = best[(classes == classes[player]) & (best > 0)]
        if len(theirs) == 0 or len(ours) == 0:
            return 1.0
        return float(np.median(theirs) / np.median(ours))


def _other_rows(
    columns: dict[str, np.ndarray[Any, Any]],
    prog: np.ndarray[Any, np.dtype[np.float64]],
    player: int,
    classes: np.ndarray[Any, np.dtype[np.int64]],
    stops_now: tuple[dict[int, tuple[int, CarStop]], dict[int, int]],
    entries: tuple[dict[int, str], dict[int, str]],
) -> list[dict[str, Any]]:
    """The other cars' rows (the wire shape of ``OtherCar``) from one field refresh."""
    n = len(prog)
    zeros = [0] * n

    def column(name: str) -> list[Any]:
        return columns[name].tolist() if name in columns else zeros

    pos, cpos = column("CarIdxPosition"), column("CarIdxClassPosition")
    pit, lap = column("CarIdxOnPitRoad"), column("CarIdxLap")
    has_lap = "CarIdxLap" in columns
    pct = np.asarray(columns["CarIdxLapDistPct"], dtype=np.float64)
    ours = prog[player] if 0 <= player < n else np.nan
    down = np.nan_to_num(np.trunc(ours - prog)).astype(np.int64).tolist()
    stops_of, out_lap = stops_now
    numbers, color_of = entries
    class_list, pct_list = classes.tolist(), np.round(pct, 5).tolist()
    out = []
    for i in np.flatnonzero(pct >= 0).tolist():
        if i == player:
            continue
        stops = stops_of.get(i)
        cid = class_list[i]
        since = out_lap.get(i)
        car_lap = int(lap[i]) if has_lap else None
        out.append(
            {
                "idx": i,
                "number": numbers.get(i, str(i)),
                "pct": pct_list[i],
                "pos": int(pos[i]),
                "pit": bool(pit[i]),
                "class_pos": int(cpos[i]),
                "class_id": cid if cid >= 0 else None,
                "class_color": color_of.get(cid, CLASS_PALETTE[0]),
                "lap": car_lap,
                "laps_down": down[i],
                "stops": stops[0] if stops else 0,
                "laps_since_stop": (
                    car_lap - since
                    if car_lap is not None and since is not None
                    else car_lap
                ),
                "stint_laps": stops[1].stint_laps if stops else None,
                "last_stop": stops[1].as_dict() if stops else None,
            }
        )
    return out
