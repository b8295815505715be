"""The stint plan (stints to the flag, fuel, tyres, driver) and the one recommendation shown."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pitbox_appliance.strategy.drivers import SwapAdvice
from pitbox_appliance.strategy.fuel import SAFETY_LAPS, FuelPlan
from pitbox_appliance.strategy.settings import StrategySettings
from pitbox_appliance.strategy.tyres import TyreAdvice

# The live state carries at most this many stints each side of now (a 100,000-lap
# race would otherwise plan thousands and make every live message hundreds of KB);
# the fuel plan's ``stops_needed`` still counts them all.
MAX_PLAN_STINTS = 40


@dataclass(frozen=True, slots=True)
class PlanInput:
    """Where the car is at the end of a lap, as the plan needs it."""

    stint: int
    stint_start_lap: int
    lap: int
    laps_left: int | None
    fuel_level: float | None
    fuel_per_lap: float | None
    tank: float | None
    lap_time: float | None
    tyre_age: int
    tyre_slope: float | None
    driver: str
    drive_time_s: dict[str, float]


def stint_plan(
    now: PlanInput,
    history: list[dict[str, Any]],
    settings: StrategySettings,
) -> list[dict[str, Any]]:
    """Completed stints (``done``) then the current one and the stints to the flag.

    Stops are as few as the tank allows; the laps after the current stint are shared
    evenly between them; each stop adds the fuel its stint needs plus the margin,
    changes tyres when the set it would keep loses more over that stint than the
    change costs, and hands the car to the driver with the least (planned) drive time.
    """
    plan = [dict(entry) for entry in history[-MAX_PLAN_STINTS:]]
    per_lap, fuel, tank = now.fuel_per_lap, now.fuel_level, now.tank
    current = {
        "stint": now.stint,
        "start_lap": now.stint_start_lap,
        "end_lap": None,
        "fuel_to_add": None,
        "tyres": False,
        "driver": now.driver,
        "done": False,
    }
    plan.append(current)
    if not per_lap or fuel is None or not tank or now.laps_left is None:
        return plan
    finish = now.lap + now.laps_left
    range_laps = max(0, math.floor(fuel / per_lap - SAFETY_LAPS))
    end = min(finish, now.lap + range_laps)
    current["end_lap"] = end
    rest = finish - end
    if rest <= 0:
        return plan
    per_tank = max(1, math.floor(tank / per_lap - SAFETY_LAPS))
    stops = math.ceil(rest / per_tank)
    lengths = [rest // stops + (1 if i < rest % stops else 0) for i in range(stops)]
    arrival = max(0.0, fuel - (end - now.lap) * per_lap)
    age = now.tyre_age + (end - now.lap)
    planned_time = dict(now.drive_time_s)
    lap_time = now.lap_time or 0.0
    planned_time[now.driver] = (
        planned_time.get(now.driver, 0.0) + (end - now.lap) * lap_time
    )
    names = list(settings.drivers) or list(planned_time) or [now.driver]
    driver = now.driver
    start = end + 1
    for i, length in enumerate(lengths[:MAX_PLAN_STINTS]):
        need = min(tank, (length + SAFETY_LAPS) * per_lap)
        add = max(0.0, need - arrival)
        tyres = bool(
            now.tyre_slope is not None
            and now.tyre_slope * age * length > settings.tyre_change_s
        )
        age = length if tyres else age + length
        others = [n for n in names if n != driver] or [driver]
        driver = min(others, key=lambda n: (planned_time.get(n, 0.0), names.index(n)))
        planned_time[driver] = planned_time.get(driver, 0.0) + length * lap_time
        plan.append(
            {
                "stint": now.stint + 1 + i,
                "start_lap": start,
                "end_lap": start + length - 1,
                "fuel_to_add": round(add, 2),
                "tyres": tyres,
                "driver": driver,
                "done": False,
            }
        )
        start += length
        arrival = SAFETY_LAPS * per_lap
    return plan


def recommendation(
    lap: int,
    fuel: FuelPlan,
    tyres: TyreAdvice,
    swap: SwapAdvice,
) -> dict[str, Any]:
    """One action for the pit wall, most urgent first (see docs/strategy.md)."""
    must = fuel.stops_needed and (
        (fuel.laps_of_fuel is not None and fuel.laps_of_fuel < 1.0 + SAFETY_LAPS)
        or (fuel.pit_window_close_lap is not None and lap >= fuel.pit_window_close_lap)
    )
    window = bool(
        fuel.stops_needed
        and fuel.pit_window_open_lap is not None
        and lap >= fuel.pit_window_open_lap
    )
    if must:
        action, reason = "pit_now", f"fuel for {fuel.laps_of_fuel or 0:.1f} laps"
    elif tyres.advice == "change":
        action, reason = "change_tyres", tyres.basis
    elif window and swap.advice == "swap":
        action, reason = "swap_driver", f"{swap.rule}: {swap.reason}"
    elif swap.advice == "swap" and swap.rule == "fatigue":
        action, reason = "swap_driver", f"{swap.rule}: {swap.reason}"
    elif window:
        action = "window_open"
        reason = f"window laps {fuel.pit_window_open_lap}–{fuel.pit_window_close_lap}"
    else:
        action, reason = "stay_out", "no stop due"
    return {"action": action, "reason": reason, "lap": lap}
