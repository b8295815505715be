"""The simulator's independent truth model: per-race draws, physical incident causes, and a counter that follows them."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np
import pytest

from driver_pc.adapters.race_sim import behaviour as bh
from driver_pc.adapters.race_sim.track import track_tables
from driver_pc.adapters.simulator import RaceSimulatorAdapter, TruthKind


@cache
def independent_race() -> tuple[RaceSimulatorAdapter, np.ndarray[Any, Any]]:
    sim = RaceSimulatorAdapter(
        laps=30,
        speed=0,
        seed=41,
        opponents=5,
        incidents=8.0,
        fatigue=6.0,
        stints_per_driver=2,
        grid_position=3,
        truth_model="independent",
    )
    return sim, np.concatenate(list(sim.ticks()))


def test_constants_are_drawn_per_race_not_shared() -> None:
    tables = track_tables()
    models = [
        bh.TeamModel(seed, 3, tables.profile, tables.curvature) for seed in range(40)
    ]
    taus = [t.tau_s / 60 for m in models for t in m.traits]
    assert min(taus) < 55
    assert max(taus) > 110
    assert len({round(t, 3) for t in taus}) == len(taus)
    shapes = [t.shape for m in models for t in m.traits]
    assert min(shapes) < 0.9
    assert max(shapes) > 1.6
    windows = {round(m.race.sequence_s, 3) for m in models}
    assert len(windows) == len(models)  # the escalation window differs per race
    for m in models:
        for t in m.traits:
            assert t.w_brake + t.w_throttle + t.w_steer == pytest.approx(1.0)
    # Same seed, same race: reproducible.
    again = bh.TeamModel(7, 3, tables.profile, tables.curvature)
    assert again.race == models[7].race
    assert again.traits == models[7].traits
    # Two turns at Martinsville, found from the geometry.
    assert len(models[0].entries) == 2
    assert len(models[0].exits) == 2


def test_fatigue_follows_each_drivers_own_curve() -> None:
    tables = track_tables()
    model = bh.TeamModel(3, 3, tables.profile, tables.curvature)
    levels = []
    for process in model.fatigue:
        for _ in range(3600):  # an hour of driving, in 1 s steps
            process.step(1.0, True, 1.0)
        levels.append(process.level)
    classic = 1 - math.exp(-60 / 90)
    assert all(0.0 <= x <= 1.0 for x in levels)
    assert len({round(x, 3) for x in levels}) == 3
    assert any(abs(x - classic) > 0.05 for x in levels)
    rested = model.fatigue[0]
    before = rested.load_s
    for _ in range(1800):
        rested.step(1.0, False, 1.0)
    assert rested.load_s < before * 0.9


def test_incidents_have_causes_and_the_counter_follows_them() -> None:
    sim, rows = independent_race()
    stages = sim.truth_of(TruthKind.INCIDENT, car_idx=0)
    assert len(stages) >= 5
    kinds = {str(e.data["type"]) for e in stages}
    assert len(kinds) >= 3, kinds
    assert all("cause" in e.data and "overshoot_m" in e.data for e in stages)
    counted = sum(int(e.data["counted"]) for e in stages)
    assert int(rows["PlayerCarTeamIncidentCount"][-1]) == counted
    # 0x stages add nothing; every counted stage shows in the counter shortly after it.
    t = rows["SessionTime"]
    count = rows["PlayerCarTeamIncidentCount"]
    for e in stages:
        if e.data["points"] == 0:
            assert e.data["counted"] == 0
            continue
        if not e.data["counted"]:
            continue
        before = count[int(np.searchsorted(t, e.session_time)) - 1]
        later = count[min(len(t) - 1, int(np.searchsorted(t, e.session_time + 1.3)))]
        assert later > before, f"counter did not move after {e.data}"
    # Off-track surface only while a stage that left the track is running.
    off = t[rows["PlayerTrackSurface"] == 0]
    spans = [
        (e.session_time, e.session_time + float(e.data["duration_s"]) + 0.05)
        for e in stages
        if e.data.get("surface_off")
    ]
    assert all(any(a <= x <= b for a, b in spans) for x in off)


def test_independent_fatigue_is_not_the_classic_curve() -> None:
    sim, _ = independent_race()
    laps = sim.truth_of(TruthKind.LAP)
    assert laps
    changes = sim.truth_of(TruthKind.DRIVER_CHANGE, car_idx=0)
    start = changes[0].session_time if changes else laps[-1].session_time
    stint = [e for e in laps if e.session_time < start]
    tau = 90 * 60 / 6.0  # the classic model at fatigue=6
    gaps = [
        abs(float(e.data["fatigue"]) - (1 - math.exp(-e.session_time / tau)))
        for e in stint
    ]
    assert max(gaps) > 0.05


def test_classic_is_the_default_and_unknown_models_are_refused() -> None:
    assert RaceSimulatorAdapter(opponents=2)._options.model == "classic"
    with pytest.raises(ValueError, match="truth model"):
        next(RaceSimulatorAdapter(opponents=2, speed=0, truth_model="nope").ticks())
