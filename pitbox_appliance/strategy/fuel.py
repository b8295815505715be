"""Live fuel strategy of one car: fuel per lap, laps of fuel, fuel to add, stops, pit window."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

# A lap counts for fuel averages only when it is green racing: not a pit lap, not the
# out-lap after a stop, not under yellow, not invalid (reset, tow), not refuelled, and
# not slower than this much of the median (a spin, traffic behind the safety car).
SLOW_LAP_FACTOR = 1.07
RECENT_LAPS = 10
SAFETY_LAPS = 0.5  # margin a stop plan keeps in the tank, in laps


@dataclass(frozen=True, slots=True)
class LapFuel:
    """What the fuel strategy needs of one completed lap."""

    lap: int
    lap_time: float | None
    fuel_used: float | None
    pit: bool
    yellow: bool = False
    invalid: bool = False  # reset, towed or given no time by iRacing
    refuelled: bool = False  # fuel rose during the lap: its fuel used is not a burn


@dataclass(frozen=True, slots=True)
class RaceLength:
    """How long the race is: a lap count, a duration, or both (whichever ends first)."""

    laps: int | None = None
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class FuelPlan:
    """The fuel side of the strategy at the end of a lap (None where unknown)."""

    fuel_per_lap: float | None
    green_laps_used: int
    laps_of_fuel: float | None
    laps_remaining: float | None
    fuel_to_finish: float | None
    stops_needed: int | None
    fuel_to_add: float | None
    pit_window_open_lap: int | None
    pit_window_close_lap: int | None
    save_per_lap_to_skip_stop: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def green_fuel_laps(laps: list[LapFuel]) -> list[LapFuel]:
    """The laps that represent racing fuel use (see SLOW_LAP_FACTOR)."""
    candidates = []
    for i, lap in enumerate(laps):
        after_pit = i > 0 and laps[i - 1].pit
        if lap.pit or after_pit or lap.yellow or lap.invalid or lap.refuelled:
            continue
        if lap.lap_time is None or lap.fuel_used is None or lap.fuel_used <= 0:
            continue
        candidates.append(lap)
    if not candidates:
        return []
    median_time = statistics.median(lap.lap_time for lap in candidates if lap.lap_time)
    return [
        lap
        for lap in candidates
        if lap.lap_time is not None and lap.lap_time <= SLOW_LAP_FACTOR * median_time
    ]


def plan_fuel(
    laps: list[LapFuel],
    fuel_level: float | None,
    tank_capacity: float | None,
    race: RaceLength,
    laps_completed: int,
    elapsed_s: float | None = None,
    laps_left: float | None = None,
) -> FuelPlan:
    """Fuel plan from the laps so far; ``laps`` in order, newest last.

    ``laps_left`` (from ``race.race_state``: laps-down and timed-race aware) wins over
    the plain count from ``race`` where it is given.
    """
    green = green_fuel_laps(laps)[-RECENT_LAPS:]
    per_lap = (
        statistics.median(lap.fuel_used for lap in green if lap.fuel_used)
        if green
        else None
    )
    lap_time = (
        statistics.median(lap.lap_time for lap in green if lap.lap_time)
        if green
        else None
    )
    laps_of_fuel = fuel_level / per_lap if per_lap and fuel_level is not None else None
    remaining = (
        float(laps_left)
        if laps_left is not None
        else _laps_remaining(race, laps_completed, elapsed_s, lap_time)
    )
    if per_lap is None or remaining is None or fuel_level is None:
        return FuelPlan(
            per_lap,
            len(green),
            laps_of_fuel,
            remaining,
            None,
            None,
            None,
            None,
            None,
            None,
        )
    to_finish = max(0.0, (remaining + SAFETY_LAPS) * per_lap)
    missing = max(0.0, to_finish - fuel_level)
    capacity = tank_capacity or max(fuel_level, 1e-9)
    stops = math.ceil(missing / capacity) if missing > 0 else 0
    # Fuel to add at the next stop: what is missing, split evenly over the stops
    # (each stop fills at most a tank).
    to_add = min(capacity, missing / stops) if stops else 0.0
    open_lap = close_lap = None
    if stops:
        # Earliest lap to stop and still finish with ``stops`` stops: the tank must
        # hold the rest of the race after the last stop.
        laps_per_tank = capacity / per_lap - SAFETY_LAPS
        close_lap = (
            laps_completed + max(0, math.floor(laps_of_fuel - SAFETY_LAPS))
            if laps_of_fuel
            else None
        )
        open_lap = laps_completed + max(0, math.ceil(remaining - stops * laps_per_tank))
        if close_lap is not None:
            open_lap = min(open_lap, close_lap)
    save = None
    if stops == 1 and remaining > 0:
        # Saving this much per lap makes the fuel on board last to the flag.
        save = max(0.0, per_lap - fuel_level / (remaining + SAFETY_LAPS))
    return FuelPlan(
        per_lap,
        len(green),
        laps_of_fuel,
        remaining,
        to_finish,
        stops,
        to_add,
        open_lap,
        close_lap,
        save,
    )


def _laps_remaining(
    race: RaceLength,
    laps_completed: int,
    elapsed_s: float | None,
    lap_time: float | None,
) -> float | None:
    options = []
    if race.laps is not None:
        options.append(float(max(0, race.laps - laps_completed)))
    if race.seconds is not None and elapsed_s is not None and lap_time:
        # A timed race ends at the first line crossing after the clock runs out.
        options.append(float(math.ceil(max(0.0, race.seconds - elapsed_s) / lap_time)))
    return min(options) if options else None


def race_length(info: dict[str, Any], session_num: int = 0) -> RaceLength:
    """Race length from session-info ``SessionInfo.Sessions``."""
    sessions = (info.get("SessionInfo") or {}).get("Sessions") or []
    for session in sessions:
        if isinstance(session, dict) and session.get("SessionNum") == session_num:
            laps_text = str(session.get("SessionLaps") or "")
            seconds = str(session.get("SessionTime") or "").split()
            return RaceLength(
                laps=int(laps_text) if laps_text.isdigit() else None,
                seconds=float(seconds[0])
                if seconds and _is_number(seconds[0])
                else None,
            )
    return RaceLength()


def tank_capacity(info: dict[str, Any]) -> float | None:
    """Usable tank size in litres from ``DriverInfo`` (times the allowed percentage)."""
    driver_info = info.get("DriverInfo") or {}
    litres = driver_info.get("DriverCarFuelMaxLtr")
    pct = driver_info.get("DriverCarMaxFuelPct", 1.0)
    try:
        return float(litres) * float(pct) if litres is not None else None
    except (TypeError, ValueError):
        return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
