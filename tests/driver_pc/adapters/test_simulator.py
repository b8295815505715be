"""The race simulator: v1 single-car behaviour kept, the endurance field, and its ground truth."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from driver_pc.adapters.ibt_file import IbtReader
from driver_pc.adapters.race_sim.channels import (
    CAR_IDX_CHANNELS,
    EMPTY_SLOT,
    SessionFlag,
    TrackSurface,
)
from driver_pc.adapters.race_sim.entries import CAR_CLASSES
from driver_pc.adapters.race_sim.track import TRACK_M, track_tables
from driver_pc.adapters.simulator import (
    SIM_CHANNELS,
    RaceSimulatorAdapter,
    TruthEvent,
    TruthKind,
    write_simulated_ibt,
)
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.messages import DriverChange, SessionInfo
from driver_pc.protocol.session_info import current_driver, parse_session_info

V1_NAMES = [
    "SessionTime",
    "SessionTick",
    "SessionNum",
    "SessionState",
    "PlayerCarIdx",
    "PlayerCarMyIncidentCount",
    "Lap",
    "LapCompleted",
    "LapDist",
    "LapDistPct",
    "LapCurrentLapTime",
    "LapLastLapTime",
    "LapBestLapTime",
    "OnPitRoad",
    "Speed",
    "RPM",
    "Gear",
    "Throttle",
    "Brake",
    "SteeringWheelAngle",
    "FuelLevel",
    "FuelLevelPct",
    "LatAccel",
    "LongAccel",
    "Yaw",
    "Lat",
    "Lon",
]
QUIET: dict[str, Any] = {"incidents": 0.0, "yellows": 0.0}


def run(sim: RaceSimulatorAdapter) -> np.ndarray[Any, Any]:
    return np.concatenate(list(sim.ticks()))


@cache
def race(**options: Any) -> tuple[RaceSimulatorAdapter, np.ndarray[Any, Any]]:
    """One simulated race per option set, shared by the tests that read it."""
    sim = RaceSimulatorAdapter(speed=0, **options)
    return sim, run(sim)


def field_race() -> tuple[RaceSimulatorAdapter, np.ndarray[Any, Any]]:
    return race(laps=12, seed=21, opponents=30, classes=2, yellows=3.0, incidents=4.0)


# ----------------------------------------------------------------- v1 unchanged


def test_default_channel_set_is_the_v1_set() -> None:
    sim = RaceSimulatorAdapter()
    assert [c.name for c in sim.channels] == V1_NAMES
    assert sim.channels == SIM_CHANNELS
    assert sim.endurance is False
    rows = next(RaceSimulatorAdapter(laps=1, speed=0).ticks())
    assert list(rows.dtype.names or ()) == V1_NAMES
    drivers = parse_session_info(sim.session_info_text())["DriverInfo"]["Drivers"]
    assert [d["UserName"] for d in drivers] == ["Alex Sim"]


def test_default_run_keeps_v1_laps_fuel_and_batches() -> None:
    sim = RaceSimulatorAdapter(laps=4, speed=0, seed=2)
    batches = list(sim.ticks())
    assert all(len(b) == 600 for b in batches[:-1])
    rows = np.concatenate(batches)
    assert rows["Lap"][-1] == 5
    assert rows["LapCompleted"][-1] == 4
    laps = np.unique(rows["LapLastLapTime"][rows["LapLastLapTime"] > 0])
    assert len(laps) == 4
    assert np.all((laps > 24.0) & (laps < 29.0))
    assert np.all(np.diff(rows["FuelLevel"]) <= 0)  # no stop needed with 12 l
    assert rows["PlayerCarIdx"].max() == 0
    assert rows["SessionState"].min() == rows["SessionState"].max() == 4
    one = next(RaceSimulatorAdapter(laps=1, speed=1e9).ticks())
    assert len(one) == 1


def test_default_lap_time_is_the_exact_line_crossing() -> None:
    rows = run(RaceSimulatorAdapter(laps=3, speed=0, seed=4))
    pct = rows["LapDistPct"].astype(float)
    t = rows["SessionTime"]
    wraps = np.flatnonzero((pct[:-1] > 0.9) & (pct[1:] < 0.1)) + 1
    dist = rows["LapDist"].astype(float)
    crossings = [
        t[i - 1]
        + (TRACK_M - dist[i - 1])
        / (TRACK_M - dist[i - 1] + dist[i])
        * (t[i] - t[i - 1])
        for i in wraps
    ]
    reported = [float(rows["LapLastLapTime"][i]) for i in wraps[1:]]
    assert reported == pytest.approx(np.diff(crossings), abs=2e-3)


# ----------------------------------------------------------------- the field


def test_opponent_arrays_are_iracing_shaped_with_empty_slots() -> None:
    sim, rows = field_race()
    names = {c.name: c for c in sim.channels}
    for spec in CAR_IDX_CHANNELS:
        assert names[spec.name].count == 64
        assert rows[spec.name].shape == (len(rows), 64)
    n = 31
    for name, empty in EMPTY_SLOT.items():
        assert np.all(rows[name][:, n:] == empty), name
    pct = rows["CarIdxLapDistPct"][:, :n]
    assert pct.min() >= 0.0
    assert pct.max() < 1.0
    assert np.all(rows["CarIdxTrackSurface"][:, :n] >= 0)
    assert np.all(rows["PlayerCarIdx"] == 0)
    assert set(np.unique(rows["CarIdxClass"][:, :n])) == {4001, 4002}
    player = rows["CarIdxLapDistPct"][:, 0]
    np.testing.assert_allclose(player, rows["LapDistPct"], atol=5e-3)


def test_positions_are_a_permutation_of_the_cars_present() -> None:
    _, rows = field_race()
    n = 31
    pos = rows["CarIdxPosition"][:, :n]
    expected = np.arange(1, n + 1)
    assert all(np.array_equal(np.sort(r), expected) for r in pos[::97])
    classes = rows["CarIdxClass"][0, :n]
    for cls in np.unique(classes):
        members = rows["CarIdxClassPosition"][::97, :n][:, classes == cls]
        want = np.arange(1, int((classes == cls).sum()) + 1)
        assert all(np.array_equal(np.sort(r), want) for r in members)
    np.testing.assert_array_equal(rows["PlayerCarPosition"], pos[:, 0])
    np.testing.assert_array_equal(
        rows["PlayerCarClassPosition"], rows["CarIdxClassPosition"][:, 0]
    )


def test_position_changes_only_at_the_line() -> None:
    _, rows = field_race()
    n = 31
    pos = rows["CarIdxPosition"][:, :n]
    lap = rows["CarIdxLap"][:, :n]
    changed = np.any(pos[1:] != pos[:-1], axis=1)
    crossed = np.any(lap[1:] != lap[:-1], axis=1)
    assert changed.any()
    assert not np.any(changed & ~crossed)


def test_lap_counters_follow_lap_dist_pct_wraps() -> None:
    _, rows = field_race()
    n = 31
    pct = rows["CarIdxLapDistPct"][:, :n].astype(float)
    lap = rows["CarIdxLap"][:, :n]
    wrapped = (pct[:-1] > 0.9) & (pct[1:] < 0.1)
    step = np.diff(lap, axis=0)
    np.testing.assert_array_equal(step, wrapped.astype(step.dtype))
    np.testing.assert_array_equal(
        rows["CarIdxLapCompleted"][:, :n], np.maximum(lap - 1, 0)
    )
    np.testing.assert_array_equal(lap[:, 0], rows["Lap"])


def test_lap_times_per_car_match_line_crossings() -> None:
    _, rows = field_race()
    t = rows["SessionTime"]
    pct = rows["CarIdxLapDistPct"][:, 5].astype(float)
    wraps = np.flatnonzero((pct[:-1] > 0.9) & (pct[1:] < 0.1)) + 1
    last = rows["CarIdxLastLapTime"][:, 5]
    assert last[wraps[0]] == -1.0  # the rolling start is not a timed lap
    reported = last[wraps[1:]].astype(float)
    assert reported == pytest.approx(np.diff(t[wraps]), abs=1.5 / 60)
    best = rows["CarIdxBestLapTime"][-1, 5]
    assert best == pytest.approx(reported.min(), abs=1e-4)


def test_laps_down_in_a_multi_class_race() -> None:
    sim, rows = race(laps=25, seed=8, opponents=20, classes=3, **QUIET)
    lap = rows["CarIdxLap"][-1, :21]
    classes = rows["CarIdxClass"][-1, :21]
    slowest = CAR_CLASSES[2].class_id
    assert lap.max() - lap[classes == slowest].max() >= 1
    f2 = rows["CarIdxF2Time"][-1, :21]
    leader = int(np.argmin(rows["CarIdxPosition"][-1, :21]))
    assert f2[leader] == pytest.approx(0.0, abs=0.5)
    assert f2.max() > 20.0
    assert rows["SessionState"][-1] == 5
    assert rows["SessionFlags"][-1] & SessionFlag.CHECKERED
    assert sim.truth_of(TruthKind.CHECKERED)


def test_every_car_makes_pit_stops_and_the_team_swaps_drivers() -> None:
    sim, rows = race(laps=30, seed=5, opponents=12, start_fuel=8.0, **QUIET)
    services = sim.truth_of(TruthKind.PIT_SERVICE)
    cars = {e.car_idx for e in services}
    assert len(cars) >= 10
    on_pit = rows["CarIdxOnPitRoad"][:, :13]
    stall = rows["CarIdxTrackSurface"][:, :13] == TrackSurface.IN_PIT_STALL
    assert np.all(on_pit[stall])
    for event in services:
        service, planned = event.data["service_s"], event.data["planned_service_s"]
        assert float(service) >= float(planned) - 0.05
        assert event.data["reasons"]
    player_swaps = sim.truth_of(TruthKind.DRIVER_CHANGE, car_idx=0)
    assert [e.data["driver_in"] for e in player_swaps][:1] == ["Bea Sim"]


def test_full_course_yellow_slows_everyone() -> None:
    sim, rows = race(
        laps=25, seed=3, opponents=25, yellows=40.0, incidents=0.0, start_fuel=30.0
    )
    starts = sim.truth_of(TruthKind.FCY_START)
    ends = sim.truth_of(TruthKind.FCY_END)
    assert starts
    assert ends
    t = rows["SessionTime"]
    flags = rows["SessionFlags"].astype(np.int64)
    yellow = (flags & (SessionFlag.YELLOW | SessionFlag.CAUTION)) != 0
    t0, t1 = starts[0].session_time, ends[0].session_time
    inside = (t > t0 + 0.1) & (t < t1 - 0.1)
    assert yellow[inside].all()
    assert not yellow[(t > 30) & (t < t0 - 1)].any()
    # Speed from CarIdxLapDistPct over 1 s windows, per car, off pit road.
    late = (t > t0 + 20) & (t < t1 - 1)
    green = (t > t1 + 30) & (t < t1 + 90)
    assert late.sum() > 600
    assert green.sum() > 600
    ratios = []
    for car in range(26):
        caution = _speed(rows, car, late)
        racing = _speed(rows, car, green)
        if caution is not None and racing is not None:  # not in the pits
            ratios.append(caution / racing)
    assert len(ratios) >= 20
    assert max(ratios) < 0.85
    assert all(0 < int(e.data["laps"]) <= 4 for e in starts)


def _speed(
    rows: np.ndarray[Any, Any], car: int, mask: np.ndarray[Any, Any]
) -> float | None:
    """Median speed over 1 s windows from CarIdxLapDistPct, off pit road."""
    idx = np.flatnonzero(mask)
    track = idx[~rows["CarIdxOnPitRoad"][idx, car].astype(bool)]
    track = track[track + 60 < len(rows)]
    track = track[mask[track + 60]]
    track = track[~rows["CarIdxOnPitRoad"][track + 60, car].astype(bool)]
    if len(track) < 120:
        return None
    lap = rows["CarIdxLap"][:, car].astype(float)
    pct = rows["CarIdxLapDistPct"][:, car].astype(float)
    progress = (lap + pct) * TRACK_M
    t = rows["SessionTime"]
    speeds = (progress[track + 60] - progress[track]) / (t[track + 60] - t[track])
    return float(np.median(speeds))


def test_incidents_are_counted_with_iracing_escalation() -> None:
    sim, rows = race(laps=30, seed=12, opponents=15, incidents=80.0, yellows=0.0)
    mine = sim.truth_of(TruthKind.INCIDENT, car_idx=0)
    assert len(mine) >= 5
    kinds = Counter(e.data["type"] for e in mine)
    assert {"off_track", "spin"} <= set(kinds)
    by_sequence: dict[int, list[TruthEvent]] = defaultdict(list)
    for e in mine:
        by_sequence[int(e.data["sequence"])].append(e)
    for events in by_sequence.values():
        points = [int(e.data["points"]) for e in events]
        counted = sum(int(e.data["counted"]) for e in events)
        assert counted == max(points)  # only the worst stage of a sequence counts
    team = rows["PlayerCarTeamIncidentCount"]
    assert team[-1] == sum(int(e.data["counted"]) for e in mine)
    assert np.all(np.diff(team) >= 0)
    assert set(np.diff(team)[np.diff(team) > 0]) <= {1, 2, 3, 4}
    # An escalated sequence (e.g. spin 2x, then contact 4x) raises the count in
    # steps to the worst stage: +2 at the spin, +2 more at the contact.
    escalated = [v for v in by_sequence.values() if len(v) > 1 and v[1].data["counted"]]
    assert escalated
    t = rows["SessionTime"]
    first, second = escalated[0][:2]
    before = int(team[np.searchsorted(t, first.session_time) - 1])
    after_first = int(team[np.searchsorted(t, first.session_time)])
    after_second = int(team[np.searchsorted(t, second.session_time)])
    assert after_first - before == first.data["points"]
    assert after_second - before == second.data["points"]
    # Each driver's own count restarts with the driver; the team count does not.
    assert rows["PlayerCarMyIncidentCount"].max() <= team[-1]
    surface = rows["PlayerTrackSurface"]
    for e in mine:
        if (
            e.data["type"] in ("off_track", "spin")
            and len(by_sequence[int(e.data["sequence"])]) == 1
        ):
            i = int(np.searchsorted(t, e.session_time + 0.3))
            assert surface[i] == TrackSurface.OFF_TRACK


def test_an_off_track_is_visible_in_the_telemetry() -> None:
    sim, rows = race(laps=30, seed=12, opponents=15, incidents=80.0, yellows=0.0)
    t = rows["SessionTime"]
    mine = sim.truth_of(TruthKind.INCIDENT, car_idx=0)
    stages = Counter(e.data["sequence"] for e in mine)
    spins = [  # a whole spin, not one cut short by a contact
        e for e in mine if e.data["type"] == "spin" and stages[e.data["sequence"]] == 1
    ]
    assert spins
    e = spins[0]
    i0 = int(np.searchsorted(t, e.session_time))
    window = slice(i0, i0 + int(float(e.data["duration_s"]) * 60))
    before = float(rows["Speed"][i0 - 1])
    assert float(rows["Speed"][window].min()) < 0.5 * before
    yaw = np.unwrap(rows["Yaw"][window].astype(float))
    assert np.ptp(yaw) > 3.0  # the car rotates
    assert rows["CarIdxTrackSurface"][i0 + 5, 0] == TrackSurface.OFF_TRACK


def test_tyre_wear_lowers_lap_times_over_a_stint() -> None:
    sim, rows = race(
        laps=36,
        seed=6,
        endurance=True,
        tyre_wear=4.0,
        fatigue=0.0,
        start_fuel=30.0,
        **QUIET,
    )
    laps = sim.truth_of(TruthKind.LAP)
    clean = [e for e in laps if not e.data["pit"] and e.lap >= 2]
    early = np.mean([float(e.data["lap_time"]) for e in clean[:6]])
    late = np.mean([float(e.data["lap_time"]) for e in clean[-6:]])
    assert late > early + 0.3
    assert (
        float(clean[-1].data["tread_mean"]) < float(clean[0].data["tread_mean"]) - 0.2
    )
    # iRacing reports tread only in the pits: constant on track, no stop here.
    assert not rows["OnPitRoad"].any()
    assert np.ptp(rows["RFwearM"]) == 0.0
    assert rows["RFwearM"][0] == 1.0


def test_tyre_wear_is_reported_when_the_car_stops() -> None:
    sim, rows = race(laps=40, seed=6, endurance=True, tyre_wear=6.0, **QUIET)
    stops = sim.truth_of(TruthKind.PIT_SERVICE, car_idx=0)
    assert stops
    stall = np.flatnonzero(rows["PlayerTrackSurface"] == TrackSurface.IN_PIT_STALL)
    assert len(stall)
    assert rows["PlayerCarInPitStall"][stall].any()
    first = stall[0]
    assert rows["RFwearM"][first] < 1.0  # the crew's reading on arrival
    assert np.ptp(rows["RFwearM"][:first]) == 0.0
    if stops[0].data["tyres"]:
        assert rows["RFwearM"][-1] == 1.0


def test_fatigue_makes_inputs_noisier() -> None:
    sim, rows = race(
        laps=30,
        seed=9,
        endurance=True,
        fatigue=30.0,
        tyre_wear=0.0,
        drivers=("Solo Sim",),
        start_fuel=30.0,
        **QUIET,
    )
    tables = track_tables()
    dist = rows["LapDist"].astype(int)
    last = len(tables.curvature) - 1
    straight = (tables.curvature[np.clip(dist - 3, 0, last)] == 0.0) & (
        tables.curvature[np.clip(dist + 3, 0, last)] == 0.0
    )
    t = rows["SessionTime"]
    steer = rows["SteeringWheelAngle"].astype(float)
    fresh = straight & (t > 5) & (t < 90)
    tired = straight & (t > t[-1] - 120)
    assert np.std(steer[tired]) > 2.0 * np.std(steer[fresh])
    levels = [float(e.data["level"]) for e in sim.truth_of(TruthKind.FATIGUE)]
    assert levels == sorted(levels)
    assert levels[-1] > 0.8


def test_ground_truth_is_listed_with_session_times() -> None:
    sim, rows = field_race()
    truth = sim.truth
    assert truth
    assert all(isinstance(e, TruthEvent) for e in truth)
    times = [e.session_time for e in truth]
    assert times == sorted(times)
    assert times[-1] <= float(rows["SessionTime"][-1]) + 1e-9
    kinds = {e.kind for e in truth}
    assert {TruthKind.LAP, TruthKind.INCIDENT, TruthKind.PIT_REQUEST} <= kinds
    json.dumps([e.as_dict() for e in truth])
    laps = sim.truth_of(TruthKind.LAP)
    reported = set(np.round(rows["LapLastLapTime"].astype(float), 3))
    assert all(round(float(e.data["lap_time"]), 3) in reported for e in laps)
    requests = sim.truth_of(TruthKind.PIT_REQUEST)
    assert all(e.data["reasons"] for e in requests)


def test_session_info_lists_every_car_and_follows_driver_changes() -> None:
    sim = RaceSimulatorAdapter(
        laps=40, speed=0, seed=3, opponents=8, classes=2, start_fuel=4.0, **QUIET
    )
    messages = list(ShimPipeline(sim).messages())
    infos = [m for m in messages if isinstance(m, SessionInfo)]
    info = parse_session_info(infos[0].yaml_text)
    drivers = info["DriverInfo"]["Drivers"]
    assert [d["CarIdx"] for d in drivers] == list(range(9))
    assert {d["CarClassShortName"] for d in drivers} == {"SK Modified", "Late Model"}
    assert all(
        {"UserName", "UserID", "TeamName", "CarNumber", "CarClassID"} <= set(d)
        for d in drivers
    )
    assert len({d["CarNumber"] for d in drivers}) == 9
    names = [m.user_name for m in messages if isinstance(m, DriverChange)]
    distinct = [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]
    assert distinct[:2] == ["Alex Sim", "Bea Sim"]
    last = parse_session_info(infos[-1].yaml_text)
    assert current_driver(last) is not None
    assert len(infos) > len(distinct)  # opponents' driver changes update it too


@pytest.mark.timeout(120)
def test_forty_car_race_at_full_speed_finishes() -> None:
    sim = RaceSimulatorAdapter(laps=2, speed=0, seed=1, opponents=40)
    ticks = sum(len(b) for b in sim.ticks())
    assert ticks > 2 * 25 * 60


def test_simulated_ibt_with_opponents(tmp_path: Path) -> None:
    truth = tmp_path / "truth.json"
    path = write_simulated_ibt(
        tmp_path / "field.ibt", laps=2, seed=2, opponents=5, truth_path=truth
    )
    with IbtReader(path) as reader:
        names = {c.name: c for c in reader.channels}
        assert names["CarIdxLapDistPct"].count == 64
        assert reader.column("CarIdxPosition").shape[1] == 64
    events = json.loads(truth.read_text())
    assert any(e["kind"] == "lap" for e in events)
    bare = write_simulated_ibt(
        tmp_path / "bare.ibt", laps=1, seed=2, opponents=5, car_idx_channels=False
    )
    with IbtReader(bare) as reader:
        names = {c.name: c for c in reader.channels}
        assert not any(n.startswith("CarIdx") for n in names)
        assert "SessionFlags" in names
        lap = reader.column("Lap")
        assert lap[-1] == 2


@pytest.mark.parametrize(
    "options",
    [
        {"opponents": 64},
        {"classes": 4},
        {"opponents": 3, "player_car_idx": 4},
        {"incidents": -1.0},
        {"start_fuel": 0.0},
    ],
)
def test_bad_options_are_rejected(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="simulator"):
        RaceSimulatorAdapter(**options)


def test_player_can_sit_in_any_slot() -> None:
    sim = RaceSimulatorAdapter(laps=1, speed=0, seed=2, opponents=6, player_car_idx=4)
    rows = run(sim)
    assert np.all(rows["PlayerCarIdx"] == 4)
    assert math.isclose(
        float(rows["CarIdxLapDistPct"][-1, 4]),
        float(rows["LapDistPct"][-1]),
        abs_tol=5e-3,
    )
    info = parse_session_info(sim.session_info_text())
    driver = current_driver(info)
    assert driver is not None
    assert driver.car_idx == 4


def test_field_batches_survive_the_wire_codec() -> None:
    import os

    from driver_pc.protocol.codec import Codec
    from driver_pc.protocol.messages import ChannelDictionary, TelemetryBatch

    sim = RaceSimulatorAdapter(laps=1, speed=0, seed=2, opponents=20)
    codec = Codec(os.urandom(32))
    dictionaries: dict[int, ChannelDictionary] = {}
    batches = 0
    for seq, message in enumerate(ShimPipeline(sim).messages()):
        envelope = codec.decode(codec.encode("car1-pc1", seq, message), dictionaries)
        if isinstance(envelope.message, ChannelDictionary):
            dictionaries[envelope.message.dict_id] = envelope.message
        if isinstance(envelope.message, TelemetryBatch) and seq % 50 == 0:
            assert isinstance(message, TelemetryBatch)
            sent, got = message.frames, envelope.message.frames
            for name in ("CarIdxPosition", "CarIdxLap", "SessionFlags"):
                np.testing.assert_array_equal(got[name], sent[name])
            np.testing.assert_allclose(
                got["CarIdxLapDistPct"], sent["CarIdxLapDistPct"], atol=1e-4
            )
            batches += 1
    assert batches > 10


def _team_run(pc: int, pcs: int = 3) -> tuple[np.ndarray, list[str]]:
    sim = RaceSimulatorAdapter(
        laps=30, speed=0, seed=4, opponents=5, start_fuel=4.0, team_pcs=pcs, pc=pc
    )
    rows = np.concatenate(list(sim.ticks()))
    return rows, [sim.session_info_text()]


def test_team_pcs_one_drives_the_others_spectate() -> None:
    """--team-pcs: one stream per PC; exactly one PC is in the car at every tick."""
    runs = [_team_run(pc)[0] for pc in (1, 2, 3)]
    single = np.concatenate(
        list(
            RaceSimulatorAdapter(
                laps=30, speed=0, seed=4, opponents=5, start_fuel=4.0
            ).ticks()
        )
    )
    assert all(len(r) == len(single) for r in runs)
    in_car = np.stack([r["IsOnTrackCar"] for r in runs])
    assert (in_car.sum(axis=0) == 1).all()
    # The car changes hands at the driver changes: more than one PC drives.
    assert len({int(np.argmax(in_car[:, i])) for i in range(in_car.shape[1])}) >= 2
    for r in runs:
        # Every PC sees the field and the session exactly as the driving PC does.
        np.testing.assert_array_equal(r["CarIdxLapDistPct"], single["CarIdxLapDistPct"])
        np.testing.assert_array_equal(r["SessionTime"], single["SessionTime"])
        driving = r["IsOnTrackCar"].astype(bool)
        # Where it drives, its player channels are the car's; elsewhere they are not.
        np.testing.assert_array_equal(r["Speed"][driving], single["Speed"][driving])
        np.testing.assert_array_equal(
            r["FuelLevel"][driving], single["FuelLevel"][driving]
        )
        assert (r["FuelLevel"][~driving] == 0).all()
        assert (r["LapDistPct"][~driving] == -1).all()


def test_team_pcs_session_info_names_each_pcs_own_user() -> None:
    infos = [
        parse_session_info(
            RaceSimulatorAdapter(
                laps=2, speed=0, seed=4, opponents=5, team_pcs=3, pc=pc
            ).session_info_text()
        )
        for pc in (1, 2, 3)
    ]
    users = {info["DriverInfo"]["DriverUserID"] for info in infos}
    assert len(users) == 3
    # The team car's current driver is the same on every PC.
    assert len({current_driver(info) for info in infos}) == 1


def test_team_pcs_options_are_checked() -> None:
    with pytest.raises(ValueError, match="pc must be"):
        RaceSimulatorAdapter(team_pcs=2, pc=3)
    with pytest.raises(ValueError, match="race_start"):
        RaceSimulatorAdapter(speed=0, race_start=1.0)
