from __future__ import annotations

from dataclasses import replace

import pytest

from pitbox_appliance.strategy.engine import StrategyEngine
from pitbox_appliance.strategy.fuel import (
    LapFuel,
    RaceLength,
    green_fuel_laps,
    plan_fuel,
    race_length,
    tank_capacity,
)


def laps_with(
    fuel: list[float],
    pit: set[int] = frozenset(),
    yellow: set[int] = frozenset(),
    slow: set[int] = frozenset(),
) -> list[LapFuel]:  # type: ignore[assignment]
    return [
        LapFuel(
            i + 1,
            90.0 * (1.3 if i + 1 in slow else 1.0),
            f,
            i + 1 in pit,
            i + 1 in yellow,
        )
        for i, f in enumerate(fuel)
    ]


def test_pit_out_yellow_and_slow_laps_are_excluded() -> None:
    laps = laps_with(
        [2.0, 2.0, 9.0, 0.5, 2.0, 1.0, 2.0, 3.0], pit={3}, yellow={6}, slow={8}
    )
    assert [lap.lap for lap in green_fuel_laps(laps)] == [1, 2, 5, 7]


def test_lap_race_needing_one_stop() -> None:
    laps = laps_with([2.0] * 10)
    plan = plan_fuel(
        laps,
        fuel_level=20.0,
        tank_capacity=60.0,
        race=RaceLength(laps=45),
        laps_completed=10,
    )
    assert plan.fuel_per_lap == pytest.approx(2.0)
    assert plan.laps_of_fuel == pytest.approx(10.0)
    assert plan.laps_remaining == 35
    assert plan.fuel_to_finish == pytest.approx(71.0)  # 35.5 laps with the margin
    assert plan.stops_needed == 1
    assert plan.fuel_to_add == pytest.approx(51.0)
    assert plan.pit_window_close_lap == 19  # 10 laps of fuel less the margin
    assert plan.pit_window_open_lap is not None
    assert plan.pit_window_open_lap <= plan.pit_window_close_lap


def test_two_stops_split_fuel_and_no_stop_needed() -> None:
    laps = laps_with([2.0] * 5)
    two = plan_fuel(laps, 10.0, 50.0, RaceLength(laps=55), laps_completed=5)
    assert two.stops_needed == 2  # 91 l missing, a tank holds 50
    assert two.fuel_to_add == pytest.approx(91.0 / 2)
    none = plan_fuel(laps, 40.0, 50.0, RaceLength(laps=20), laps_completed=5)
    assert none.stops_needed == 0
    assert none.fuel_to_add == 0.0
    assert none.pit_window_open_lap is None


def test_fuel_save_target_to_skip_the_stop() -> None:
    laps = laps_with([2.0] * 5)
    plan = plan_fuel(laps, 38.0, 60.0, RaceLength(laps=25), laps_completed=5)
    assert plan.stops_needed == 1
    assert plan.save_per_lap_to_skip_stop == pytest.approx(2.0 - 38.0 / 20.5)


def test_timed_race_counts_laps_from_the_clock() -> None:
    laps = laps_with([2.0] * 5)
    plan = plan_fuel(
        laps, 30.0, 60.0, RaceLength(seconds=3600.0), laps_completed=5, elapsed_s=450.0
    )
    assert plan.laps_remaining == 35  # ceil(3150 / 90)


def test_unknown_inputs_give_none_not_guesses() -> None:
    plan = plan_fuel([], 30.0, 60.0, RaceLength(laps=10), laps_completed=0)
    assert plan.fuel_per_lap is None
    assert plan.stops_needed is None


def test_session_info_parsing() -> None:
    info = {
        "SessionInfo": {
            "Sessions": [
                {
                    "SessionNum": 0,
                    "SessionLaps": "unlimited",
                    "SessionTime": "5400.0000 sec",
                }
            ]
        },
        "DriverInfo": {"DriverCarFuelMaxLtr": 100.0, "DriverCarMaxFuelPct": 0.5},
    }
    assert race_length(info) == RaceLength(laps=None, seconds=5400.0)
    assert tank_capacity(info) == 50.0


def test_ingest_publishes_fuel_strategy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from driver_pc.adapters.simulator import write_simulated_ibt
    from driver_pc.protocol.live import StrategySnapshot
    from pitbox_appliance.cli.importer import import_file, local_codec
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    path = write_simulated_ibt(tmp_path / "s.ibt", laps=12, seed=3, start_fuel=4.0)
    codec = local_codec()
    ingestor = Ingestor(
        codec, SessionWriter(open_database(f"sqlite:///{tmp_path / 'db'}"))
    )
    import_file(path, ingestor, codec, car="car5")
    (live,) = ingestor.live.values()
    plan = live.strategy
    assert plan is not None
    assert plan.fuel_per_lap == pytest.approx(0.4, abs=0.05)  # the simulator's burn
    assert plan.laps_remaining == 0
    events = ingestor.take_live(set(), 0.0).events
    advice = [e.payload for e in events if e.kind == "strategy_recommendation"]
    assert advice
    # 4 l cannot do 12 laps at 0.4 l/lap: a stop is advised, then none after it.
    assert isinstance(advice[0], StrategySnapshot)
    assert isinstance(advice[-1], StrategySnapshot)
    assert advice[0].stops_needed == 1
    assert advice[-1].stops_needed == 0


def test_driver_swap_at_a_stop_makes_one_new_stint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from driver_pc.adapters.simulator import RaceSimulatorAdapter
    from driver_pc.pipeline import ShimPipeline
    from pitbox_appliance.cli.importer import local_codec
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    db = tmp_path / "p.db"
    codec = local_codec()
    ingestor = Ingestor(codec, SessionWriter(open_database(f"sqlite:///{db}")))
    sim = RaceSimulatorAdapter(laps=8, speed=0, seed=3, start_fuel=2.0)
    for seq, message in enumerate(ShimPipeline(sim).messages(), 1):
        ingestor.handle(codec.encode("car5-pc1", seq, message))
    ingestor.flush()
    with sqlite3.connect(db) as conn:
        stints = list(
            conn.execute(
                "SELECT s.number, d.user_name, (SELECT COUNT(*) FROM laps l"
                " WHERE l.stint_id = s.id) FROM stints s JOIN drivers d"
                " ON d.id = s.driver_id ORDER BY s.number"
            )
        )
    assert [(n, name) for n, name, _laps in stints] == [(1, "Alex Sim"), (2, "Bea Sim")]
    assert all(laps > 0 for _n, _name, laps in stints)


def test_refuelled_and_invalid_laps_are_left_out_of_fuel_per_lap() -> None:
    laps = laps_with([2.0] * 6)
    # Topped up during lap 3 (a reset to the pits): what it "used" is no burn rate,
    # even where some source gave a figure; lap 5 was reset, a tow, never a lap.
    laps[2] = replace(laps[2], fuel_used=0.4, refuelled=True)
    laps[4] = replace(laps[4], fuel_used=3.5, invalid=True)
    assert [lap.lap for lap in green_fuel_laps(laps)] == [1, 2, 4, 6]
    plan = plan_fuel(
        laps,
        fuel_level=20.0,
        tank_capacity=60.0,
        race=RaceLength(laps=40),
        laps_completed=6,
    )
    assert plan.fuel_per_lap == pytest.approx(2.0)
    assert plan.green_laps_used == 4


def test_engine_leaves_refuelled_laps_out() -> None:
    engine = StrategyEngine()
    snapshot = None
    for n in range(1, 6):
        refuelled = n >= 3  # without the flag these three would set the median
        snapshot, _ = engine.on_lap(
            n,
            90.0,
            0.5 if refuelled else 2.0,
            False,
            90.0 * n,
            30.0,
            "A",
            refuelled=refuelled,
        )
    assert snapshot is not None
    assert snapshot.fuel_per_lap == pytest.approx(2.0)
