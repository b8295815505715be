"""The live strategy engine: race length, pit loss, tyres, driver swaps, stint plan, opponents."""

from __future__ import annotations

import itertools
import json
import statistics
from pathlib import Path

import numpy as np
import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol.events import (
    DriverFatigueUpdate,
    Event,
    EventKind,
    encode_event,
)
from pitbox_appliance.strategy.drivers import swap_advice
from pitbox_appliance.strategy.engine import StrategyEngine
from pitbox_appliance.strategy.fuel import RaceLength
from pitbox_appliance.strategy.opponents import (
    StopModel,
    class_color,
    classify_stop,
    project_rejoin,
)
from pitbox_appliance.strategy.race import race_state
from pitbox_appliance.strategy.settings import StrategySettings
from pitbox_appliance.strategy.tyres import TyreLap, tyre_advice
from training.strategy_scoring import SimRace, run_sim_race, true_kind

# ---- hand-built cases ----------------------------------------------------------------


def test_timed_race_ends_at_the_leaders_first_crossing_after_the_clock() -> None:
    # 100 s left; the leader (us) is at 10.5 laps on 20 s laps: the clock runs out at
    # 15.5, so the leader finishes at the 16th crossing: 6 laps left.
    state = race_state(RaceLength(seconds=1000.0), 10.5, None, 900.0, 20.0, None)
    assert state.kind == "timed"
    assert state.time_left_s == 100.0
    assert state.laps_left == 6
    assert state.ends_by == "time"
    # With a lap limit that comes first, the laps win.
    both = race_state(
        RaceLength(laps=13, seconds=1000.0), 10.5, None, 900.0, 20.0, None
    )
    assert both.kind == "laps_or_time"
    assert (both.laps_left, both.ends_by) == (3, "laps")


def test_laps_down_car_runs_the_laps_the_leaders_pace_allows() -> None:
    # Lap race of 100; leader at 90.2 on 20 s laps needs 9.8 laps = 196 s. We are at
    # 88.9 (1 lap down) on 21 s laps: 9.33 laps in that time → at 98.23 when the
    # leader finishes, we finish at crossing 99: 11 laps left from 88 completed.
    state = race_state(RaceLength(laps=100), 88.9, 90.2, 1800.0, 21.0, 20.0)
    assert state.laps_down == 1
    assert state.laps_left == 11
    # Leading, we run all 12 remaining laps.
    lead = race_state(RaceLength(laps=100), 88.9, None, 1800.0, 21.0, None)
    assert (lead.laps_down, lead.laps_left) == (0, 12)


def tyre_laps(slope: float, n: int = 20, burn: float = 1.0) -> list[TyreLap]:
    # Lap time = base + slope × age + 0.03 s per litre on board (fuel burns off).
    return [
        TyreLap(age, 90.0 + slope * age + 0.03 * (60.0 - burn * age), 60.0 - burn * age)
        for age in range(1, n + 1)
    ]


def test_tyre_change_advised_only_when_wear_costs_more_than_the_change() -> None:
    worn = tyre_advice(tyre_laps(0.05), 20, 30, change_time_s=12.0, fuel_s_per_l=0.03)
    assert worn.advice == "change"
    assert worn.loss_per_lap_s == pytest.approx(0.05, abs=1e-6)
    assert worn.loss_next_stint_s == pytest.approx(0.05 * 20 * 30)
    fresh = tyre_advice(tyre_laps(0.01), 20, 30, change_time_s=12.0, fuel_s_per_l=0.03)
    assert fresh.advice == "keep"  # 0.01 × 20 × 30 = 6 s < 12 s
    # Without the fuel correction the burn-off hides the wear (lap times fall).
    raw = tyre_advice(tyre_laps(0.02), 20, 30, change_time_s=12.0, fuel_s_per_l=0.0)
    assert raw.loss_per_lap_s is not None
    assert raw.loss_per_lap_s < 0.0
    assert raw.advice == "keep"
    assert tyre_advice(tyre_laps(0.05, n=3), 3, 30, 12.0, 0.03).advice is None


def test_driver_swap_rules_name_the_rule_that_fired() -> None:
    rules = StrategySettings(
        max_stint_s=3600.0, max_total_s=7200.0, min_total_s=3000.0, drivers=("A", "B")
    )
    times = {"A": 3000.0, "B": 500.0}
    stay = swap_advice("A", 3000.0, times, 20000.0, None, rules)
    assert (stay.advice, stay.rule, stay.fatigue_source) == ("stay", None, "stint_time")
    at_max = swap_advice("A", 3600.0, times, 20000.0, None, rules)
    assert (at_max.advice, at_max.rule, at_max.next_driver) == (
        "swap",
        "max_stint",
        "B",
    )
    tired = swap_advice("A", 600.0, times, 20000.0, 0.75, rules)
    assert (tired.rule, tired.fatigue_source) == ("fatigue", "detector")
    total = swap_advice("A", 100.0, {"A": 7200.0, "B": 5000.0}, 20000.0, 0.1, rules)
    assert total.rule == "max_total"
    # B still needs 2500 s and only 6000 s are left (one max stint + 2400 s): swap now.
    owed = swap_advice("A", 100.0, times, 6000.0, None, rules)
    assert (owed.rule, owed.next_driver) == ("min_total", "B")
    alone = swap_advice(
        "A", 3600.0, {"A": 3600.0}, None, None, StrategySettings(max_stint_s=3600.0)
    )
    assert alone.advice == "stay"
    assert "no other driver" in alone.reason


def test_stop_kinds_from_stationary_time() -> None:
    model = StopModel(tank_l=30.0, fuel_per_lap=0.4, fill_rate_lps=2.0)
    assert classify_stop(0.5, 10.0, model) == "drive_through"
    assert classify_stop(4.0 + 5.0, 10.0, model) == "fuel"  # 10 l at 2 l/s
    assert classify_stop(4.0 + 12.0, 10.0, model) == "tyres"  # the change outlasts it
    assert classify_stop(4.0 + 15.0, 30.0, model) == "fuel"  # a full tank hides tyres
    assert classify_stop(4.0 + 12.0 + 8.0, 10.0, model) == "repair"


def test_class_colour_from_session_info_forms() -> None:
    assert class_color("0xffda59", 0) == "#ffda59"
    assert class_color(16777215, 0) == "#ffffff"
    assert class_color(None, 1) != class_color(None, 0)
    assert class_color("red", 0).startswith("#")


def test_rejoin_projection_by_class() -> None:
    # Us (idx 0) at 10.50 laps; class 1 cars at 10.90, 10.20, 9.95; class 2 at 10.30.
    prog = np.array([10.5, 10.9, 10.2, 9.95, 10.3])
    classes = np.array([1, 1, 1, 1, 2])
    numbers = {1: "1", 2: "2", 3: "3", 4: "4"}
    # 10 s loss on 20 s laps: we come out at 10.0, behind 1, 2 (class) and 4 (other).
    rejoin = project_rejoin(prog, classes, 0, 10.0, 20.0, numbers)
    assert rejoin is not None
    assert rejoin.model_dump() == {
        "position": 4,
        "class_position": 3,
        "gap_ahead_s": pytest.approx(4.0),
        "gap_behind_s": pytest.approx(1.0),
        "car_ahead": "2",
        "car_behind": "3",
        "loss_s": 10.0,
    }


# ---- a simulated race ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_race() -> SimRace:
    return run_sim_race(
        laps=75, seed=11, opponents=16, classes=2, tyre_wear=3.0, start_fuel=9.0
    )


def test_pit_loss_learned_close_to_the_simulators(sim_race: SimRace) -> None:
    truth = [e for e in sim_race.sim.truth if e.car_idx == 0]
    services = [e.data["service_s"] for e in truth if e.kind == "pit_service"]
    laps = {e.lap: e.data for e in truth if e.kind == "lap"}
    assert services, "the team car must stop in this race"
    green = statistics.median(
        d["lap_time"] for d in laps.values() if not d["pit"] and not d["fcy"]
    )
    # The stop's true cost: its in- and out-lap against two green laps, green stops
    # only (a stop under yellow costs less and is not what a plan should assume).
    pit_laps = sorted(n for n, d in laps.items() if d["pit"])
    losses = [
        laps[n]["lap_time"] + laps[n + 1]["lap_time"] - 2 * green
        for n in pit_laps
        if n - 1 not in pit_laps and n + 1 in laps
        if not laps[n]["fcy"] and not laps[n + 1]["fcy"]
    ]
    assert losses, "the team car must make a green stop in this race"
    loss = sim_race.engine.pit_loss
    assert loss is not None
    assert loss.source == "learned"
    assert loss.s == pytest.approx(statistics.median(losses), abs=1.0)
    entries = [e for e in truth if e.kind == "pit_service"]
    for stop, event in zip(sim_race.engine.stops, entries, strict=False):
        assert stop.stationary_s == pytest.approx(event.data["service_s"], abs=0.1)
        assert stop.fuel_added_l == pytest.approx(event.data["fuel_added_l"], abs=0.05)
        assert stop.tyres == event.data["tyres"]


def test_opponent_stops_detected_and_classified(sim_race: SimRace) -> None:
    truth = [
        e for e in sim_race.sim.truth if e.kind == "pit_service" and e.car_idx != 0
    ]
    found = [
        (car, stop)
        for car, stops in sim_race.engine.field_tracker.stops.items()
        for stop in stops
        if car != 0
    ]
    matched = 0
    right = 0
    for event in truth:
        hits = [
            s for c, s in found if c == event.car_idx and abs(s.lap - event.lap) <= 1
        ]
        if hits:
            matched += 1
            right += hits[0].kind == true_kind(event.data)
    precision = matched / len(found)
    recall = matched / len(truth)
    accuracy = right / matched
    assert len(truth) >= 15
    assert precision >= 0.9
    assert recall >= 0.9
    assert accuracy >= 0.8


def test_rejoin_projection_matches_what_happened(sim_race: SimRace) -> None:
    assert sim_race.rejoins, "the team car must stop and complete its out-lap"
    for projected, actual in sim_race.rejoins:
        assert projected is not None
        assert abs(projected.class_position - actual) <= 1


def test_stint_plan_replans_after_the_stop(sim_race: SimRace) -> None:
    stop = sim_race.engine.stops[0]
    before = sim_race.strategies[stop.lap - 2].stint_plan
    after = sim_race.strategies[stop.lap + 2].stint_plan
    assert [s.done for s in before][:1] == [False]
    assert len(before) >= 2  # the current stint and the one after the stop
    assert after[0].done is True
    assert after[0].end_lap == stop.lap
    assert after[1].start_lap == stop.lap + 1
    assert after[0].fuel_to_add == pytest.approx(stop.fuel_added_l, abs=0.01)
    # The plan stopped on fuel; the car stopped earlier (under a yellow here), so
    # the stints after it were re-planned from the real stop, end to end.
    assert before[0].end_lap is not None
    assert before[0].end_lap >= stop.lap
    assert before[1].start_lap == before[0].end_lap + 1
    assert after[1].start_lap != before[1].start_lap
    for a, b in itertools.pairwise(after):
        assert a.end_lap is not None
        assert b.start_lap == a.end_lap + 1
    # After it, the plan runs to the flag.
    final = sim_race.strategies[max(sim_race.strategies)].race
    assert after[-1].end_lap is not None
    assert after[-1].end_lap >= max(sim_race.strategies) - 1
    assert final is not None
    assert final.laps_left is not None
    assert final.laps_left <= 1


def test_advice_events_only_when_the_action_changes(sim_race: SimRace) -> None:
    actions = [a.recommendation.action for a in sim_race.advice if a.recommendation]
    assert actions, "a stop was needed, so some advice was given"
    assert all(a != b for a, b in itertools.pairwise(actions))
    assert len(actions) < len(sim_race.strategies) / 3
    assert "window_open" in actions or "pit_now" in actions
    for payload in sim_race.advice:  # typed, and plain JSON on the bus
        message = Event("car42", EventKind.STRATEGY_RECOMMENDATION, payload).message()
        assert payload.recommendation is not None
        recommendation = json.loads(json.dumps(message))["recommendation"]
        assert recommendation == payload.recommendation.model_dump()
        assert encode_event("car42", message["kind"], payload.model_dump()) == message


def test_ingest_puts_the_engine_in_the_live_state(tmp_path: Path) -> None:
    from driver_pc.pipeline import ShimPipeline
    from pitbox_appliance.cli.importer import local_codec
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    codec = local_codec()
    ingestor = Ingestor(
        codec, SessionWriter(open_database(f"sqlite:///{tmp_path / 'db'}"))
    )
    sim = RaceSimulatorAdapter(laps=4, speed=0, seed=8, opponents=8, classes=2)
    for seq, message in enumerate(ShimPipeline(sim).messages(), 1):
        ingestor.handle(codec.encode("car42-pc1", seq, message))
    (live,) = ingestor.live.values()
    strategy = live.strategy
    assert strategy is not None
    assert strategy.race is not None
    assert strategy.race.laps_total == 4
    for part in (strategy.pit_loss_s, strategy.tyres, strategy.driver_swap):
        assert part is not None
    assert strategy.stint_plan
    assert strategy.rejoin is not None
    others = live.others.cars
    assert len(others) == 8
    colours = {o.class_id: o.class_color for o in others}
    assert len(colours) == 2
    assert all(c is not None and c.startswith("#") for c in colours.values())
    for other in others:
        assert other.lap is not None
        assert other.lap >= 3
        assert other.laps_down is not None
        assert other.stops is not None
    # The detectors' fatigue reaches the swap advice.
    events = ingestor.take_live(set(), 0.0).events
    fatigue = [
        e.payload.fatigue
        for e in events
        if isinstance(e.payload, DriverFatigueUpdate) and e.car == "car42"
    ]
    assert fatigue, "the fatigue detector reports at least once in 4 laps"
    assert strategy.driver_swap is not None
    assert strategy.driver_swap.fatigue_source == "detector"
    assert strategy.driver_swap.fatigue in fatigue


def test_strategy_rules_come_from_config(tmp_path: Path) -> None:
    from pitbox_appliance.config import ConfigError, load_config

    path = tmp_path / "pitbox.yaml"
    path.write_text("strategy:\n  max_stint_s: 3000\n  drivers: [A, B]\n")
    config = load_config(path)
    settings = StrategySettings(**dict(config.strategy))
    assert settings.max_stint_s == 3000.0
    assert settings.drivers == ("A", "B")
    path.write_text("strategy:\n  fatigue_swap: 2\n")
    with pytest.raises(ConfigError, match="fatigue_swap"):
        load_config(path)


def test_race_length_follows_the_session_running_now() -> None:
    engine = StrategyEngine()
    engine.session_info(
        {
            "SessionInfo": {
                "Sessions": [
                    {
                        "SessionNum": 0,
                        "SessionLaps": "unlimited",
                        "SessionTime": "600 sec",
                    },
                    {"SessionNum": 2, "SessionLaps": "50", "SessionTime": "unlimited"},
                ]
            }
        }
    )
    assert engine.race == RaceLength(laps=None, seconds=600.0)
    rows = np.zeros(3, dtype=[("SessionTime", "f8"), ("SessionNum", "i4")])
    rows["SessionTime"] = [1.0, 1.1, 1.2]
    rows["SessionNum"] = 2
    assert engine.on_batch(rows) is None  # no field arrays: no others list
    assert engine.race == RaceLength(laps=50, seconds=None)


def test_laps_left_matches_the_laps_actually_run(sim_race: SimRace) -> None:
    # The sim ends our race at our first crossing after the leader's 75th lap.
    final = max(sim_race.strategies)
    errors = [
        strategy.race.laps_left - (final - lap)
        for lap, strategy in sim_race.strategies.items()
        if lap >= 5
        and strategy.race is not None
        and strategy.race.laps_left is not None
    ]
    assert len(errors) == sum(lap >= 5 for lap in sim_race.strategies)
    assert max(abs(e) for e in errors) <= 1
    assert sum(e == 0 for e in errors) >= 0.95 * len(errors)


def test_yellow_laps_are_the_simulators_fcy_laps(sim_race: SimRace) -> None:
    truth = {
        e.lap: e.data["fcy"]
        for e in sim_race.sim.truth
        if e.kind == "lap" and e.car_idx == 0
    }
    seen = {lap.lap: lap.yellow for lap in sim_race.engine.laps}
    assert any(truth.values()), "the race must have a full-course yellow"
    assert {n for n, y in seen.items() if y} == {n for n, y in truth.items() if y}


def test_stint_plan_is_bounded_for_a_very_long_race() -> None:
    from pitbox_appliance.strategy.plan import MAX_PLAN_STINTS, PlanInput, stint_plan

    now = PlanInput(
        stint=3,
        stint_start_lap=100,
        lap=120,
        laps_left=100_000,
        fuel_level=50.0,
        fuel_per_lap=2.0,
        tank=100.0,
        lap_time=90.0,
        tyre_age=20,
        tyre_slope=None,
        driver="A",
        drive_time_s={"A": 3600.0},
    )
    history = [
        {"stint": n, "start_lap": n, "end_lap": n, "done": True} for n in range(100)
    ]
    plan = stint_plan(now, history, StrategySettings())
    done = [s for s in plan if s.get("done")]
    planned = [s for s in plan if not s.get("done")]
    assert len(done) == MAX_PLAN_STINTS
    assert done[-1]["stint"] == 99
    # The current stint plus at most MAX_PLAN_STINTS stops ahead.
    assert len(planned) == MAX_PLAN_STINTS + 1
    assert len(json.dumps(plan)) < 20_000
