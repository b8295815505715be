"""Runs a simulated race through the strategy engine and scores it against the simulator's truth."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol.live import Rejoin, StrategySnapshot
from driver_pc.protocol.session_info import parse_session_info
from pitbox_appliance.analysis.segmentation import LapSegmenter
from pitbox_appliance.strategy.engine import StrategyEngine


@dataclass
class SimRace:
    """The engine after a simulated race, with what it said along the way."""

    sim: RaceSimulatorAdapter
    engine: StrategyEngine
    strategies: dict[int, StrategySnapshot] = field(default_factory=dict)
    advice: list[StrategySnapshot] = field(default_factory=list)
    # (projection just before our pit entry, our class position after the out-lap)
    rejoins: list[tuple[Rejoin | None, int]] = field(default_factory=list)


def run_sim_race(**options: Any) -> SimRace:
    """Feed ``RaceSimulatorAdapter(speed=0, **options)`` to one engine, as the core does.

    The team car is ``CarIdx`` 0; its driver is read from the truth's driver changes
    (the core gets it from the shim's DriverChange messages).
    """
    sim = RaceSimulatorAdapter(speed=0, **options)
    engine = StrategyEngine()
    engine.session_info(parse_session_info(sim.session_info_text()))
    race = SimRace(sim, engine)
    seg = LapSegmenter()
    on_pit = False
    pending: Rejoin | None = None
    exit_lap: int | None = None
    for rows in sim.ticks():
        before = engine.rejoin
        laps = seg.feed(rows)
        engine.on_batch(rows)  # as the core: the batch first, then its laps
        for lap in laps:
            changes = [
                e for e in sim.truth if e.kind == "driver_change" and e.car_idx == 0
            ]
            driver = str(changes[-1].data["driver_in"]) if changes else "Alex Sim"
            strategy, changed = engine.on_lap(
                lap.lap_number,
                lap.lap_time,
                lap.fuel_used,
                lap.pit_lap,
                lap.end_time,
                float(rows["FuelLevel"][-1]),
                driver,
            )
            race.strategies[lap.lap_number] = strategy
            if changed is not None:
                race.advice.append(changed)
        pit = rows["OnPitRoad"].astype(bool)
        if not on_pit and pit.any():
            pending = before
        if (on_pit and not pit.all()) or (not on_pit and pit.any() and not pit[-1]):
            exit_lap = int(rows["Lap"][-1])
        if exit_lap is not None and pending is not None:
            crossed = np.flatnonzero(rows["Lap"] > exit_lap)
            if len(crossed):
                position = int(rows["PlayerCarClassPosition"][crossed[0]])
                race.rejoins.append((pending, position))
                pending, exit_lap = None, None
        on_pit = bool(pit[-1])
    return race


def true_kind(data: Mapping[str, Any]) -> str:
    """The kind of a truth ``pit_service``: repair before tyres before fuel."""
    if data["repair_s"] > 0 or data["optional_repair_s"] > 0:
        return "repair"
    return "tyres" if data["tyres"] else "fuel"


def score(race: SimRace) -> dict[str, Any]:
    """Opponent stops, stop kinds, rejoin and laps left against the simulator's truth."""
    truth = [e for e in race.sim.truth if e.kind == "pit_service" and e.car_idx != 0]
    found = [
        (car, stop)
        for car, stops in race.engine.field_tracker.stops.items()
        for stop in stops
        if car != 0
    ]
    matched = right = 0
    confusion: dict[str, int] = {}
    for event in truth:
        hits = [
            s for c, s in found if c == event.car_idx and abs(s.lap - event.lap) <= 1
        ]
        got = hits[0].kind if hits else "missed"
        key = f"{true_kind(event.data)}->{got}"
        confusion[key] = confusion.get(key, 0) + 1
        if hits:
            matched += 1
            right += got == true_kind(event.data)
    final = max(race.strategies) if race.strategies else 0
    errors = [
        s.race.laps_left - (final - lap)
        for lap, s in race.strategies.items()
        if lap >= 5 and s.race is not None and s.race.laps_left is not None
    ]
    rejoin = [(p.class_position if p else None, actual) for p, actual in race.rejoins]
    loss = race.engine.pit_loss
    return {
        "stops_true": len(truth),
        "stops_found": len(found),
        "precision": round(matched / len(found), 3) if found else None,
        "recall": round(matched / len(truth), 3) if truth else None,
        "kind_right": right,
        "kind_of": matched,
        "confusion": confusion,
        "rejoin_projected_vs_actual": rejoin,
        "laps_left_exact": sum(e == 0 for e in errors),
        "laps_left_of": len(errors),
        "laps_left_max_error": max((abs(e) for e in errors), default=None),
        "pit_loss_s": round(loss.s, 2) if loss else None,
        "pit_loss_stops": loss.stops_used if loss else 0,
        "advice_events": len(race.advice),
        "laps": final,
        "median_lap_s": round(
            statistics.median(lap.lap_time for lap in race.engine.laps if lap.lap_time),
            3,
        )
        if race.engine.laps
        else None,
    }
