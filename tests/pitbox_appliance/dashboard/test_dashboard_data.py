"""Dashboard data layer on a real SQLite filled by ``pitbox import`` of simulator-written and real .ibt files."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from driver_pc.adapters.simulator import (
    ORIGIN_LAT,
    ORIGIN_LON,
    TRACK_M,
    track_point,
)
from pitbox_appliance.cli import main as pitbox
from pitbox_appliance.dashboard.crew_store import CrewStore, LogEntry, handoff_key
from pitbox_appliance.dashboard.lap_analysis import (
    compare_laps,
    lap_trace_from_frames,
    oval_outline,
)
from pitbox_appliance.dashboard.session_data import (
    LapInfo,
    SessionData,
    session_extras,
)
from tests.conftest import real_file
from tests.pitbox_appliance.dashboard.conftest import ImportedDb, import_sim_session

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> ImportedDb:
    return import_sim_session(tmp_path_factory.mktemp("dashdb"))


@pytest.fixture
async def data(imported: ImportedDb) -> SessionData:
    store = SessionData(imported.url)
    yield store  # type: ignore[misc]
    store.close()


# ---- laps and stints ---------------------------------------------------------------
async def test_history_lists_laps_and_stints(
    data: SessionData, imported: ImportedDb
) -> None:
    history = await data.history(imported.session_key)
    assert history is not None
    assert history.session.track.startswith("Martinsville")
    assert history.session.track_length_m == pytest.approx(TRACK_M, abs=1)
    numbers = [lap.number for lap in history.laps]
    assert numbers == sorted(numbers)
    assert numbers[-1] == 6
    # The car ran out of its 2 l after two laps: a pit stop split the session.
    assert [s.number for s in history.stints] == [1, 2]
    assert sum(s.laps for s in history.stints) == len(history.laps)
    assert any(lap.pit_lap for lap in history.laps)
    assert history.stints[0].end_time == history.stints[1].start_time
    assert history.stints[1].end_time is None
    best, last = history.best, history.last
    assert best is not None
    assert last is not None
    assert best.green
    assert best.lap_time == min(lap.lap_time for lap in history.laps if lap.green)
    assert last.number == 6
    second = history.stints[1]
    green = [lap.lap_time for lap in history.laps if lap.stint == 2 and lap.green]
    assert second.avg_lap == pytest.approx(sum(green) / len(green))  # type: ignore[arg-type]
    assert second.best_lap == min(green)  # type: ignore[type-var]
    # Pit laps with refuelling have negative "fuel used": stint fuel leaves them out.
    assert second.fuel_used is not None
    assert second.fuel_used > 0
    totals = history.driver_totals()
    assert sum(t.share for t in totals) == pytest.approx(1.0)
    assert sum(t.laps for t in totals) == len(history.laps)
    assert history.drivers() == tuple(t.driver for t in totals)


async def test_open_stint_runs_until_now(
    data: SessionData, imported: ImportedDb
) -> None:
    history = await data.history(imported.session_key)
    assert history is not None
    open_stint = history.stints[-1]
    assert open_stint.drive_time(open_stint.start_time + 42.0) == pytest.approx(42.0)
    closed = history.stints[0]
    assert closed.end_time is not None
    assert closed.drive_time(1e9) == pytest.approx(closed.end_time - closed.start_time)


async def test_unknown_session_and_latest(
    data: SessionData, imported: ImportedDb
) -> None:
    assert await data.history("nope") is None
    assert await data.latest_session_key() == imported.stub_key
    assert data.problem is None


async def test_answers_are_cached_and_shared(
    data: SessionData, imported: ImportedDb
) -> None:
    before = data.queries
    results = await asyncio.gather(
        *(data.history(imported.session_key) for _ in range(8))
    )
    assert all(r is results[0] for r in results)
    assert data.queries == before + 1
    await data.history(imported.session_key)
    assert data.queries == before + 1


async def test_missing_database_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "later.sqlite3"
    store = SessionData(f"sqlite:///{path}")
    try:
        assert await store.history("x") is None
        assert store.problem is not None
        assert "no database yet" in store.problem
        assert not path.exists()
        outline = await store.outline("x")
        assert outline.kind == "oval"
    finally:
        store.close()


async def test_database_without_tables_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    sqlite3.connect(path).close()
    store = SessionData(f"sqlite:///{path}")
    try:
        assert await store.latest_session_key() is None
        assert store.problem == "the database has no PitBox tables yet"
    finally:
        store.close()


# ---- lap telemetry and comparison ----------------------------------------------------
async def test_lap_trace_runs_along_the_lap(
    data: SessionData, imported: ImportedDb
) -> None:
    history = await data.history(imported.session_key)
    assert history is not None
    best = history.best
    assert best is not None
    assert best.lap_time is not None
    trace = await data.lap_trace(history.session.id, best)
    assert trace is not None
    assert trace.pct[0] == 0.0
    assert trace.pct[-1] == 1.0
    assert np.all(np.diff(trace.pct) >= 0)
    assert trace.time[-1] == pytest.approx(best.lap_time)
    assert len(trace.pct) > 50 * best.lap_time  # ~60 Hz
    assert 10 < trace.speed.max() < 60  # m/s on a short oval
    assert trace.has_gps
    assert trace.throttle is not None
    assert trace.brake is not None
    assert await data.lap_trace(history.session.id, best) is trace  # cached
    out_lap = history.laps[0]
    assert out_lap.start_time is None
    assert await data.lap_trace(history.session.id, out_lap) is None


async def test_comparison_ends_on_the_lap_time_difference(
    data: SessionData, imported: ImportedDb
) -> None:
    history = await data.history(imported.session_key)
    assert history is not None
    best, last = history.best, history.last
    assert best is not None
    assert last is not None
    a = await data.lap_trace(history.session.id, best)
    b = await data.lap_trace(history.session.id, last)
    assert a is not None
    assert b is not None
    same = compare_laps(a, a, history.session.track_length_m)
    assert same.total_delta == 0
    assert all(row[3] == 0 for row in same.rows)
    diff = compare_laps(a, b, history.session.track_length_m, (0.0, 0.5))
    assert diff.unit == "m"
    assert diff.rows[-1][0] == pytest.approx(TRACK_M, abs=1)
    assert diff.total_delta == pytest.approx(last.lap_time - best.lap_time, abs=0.002)  # type: ignore[operator]
    assert len(diff.sectors) == 2
    assert sum(diff.sectors) == pytest.approx(diff.total_delta, abs=0.002)
    pct = compare_laps(a, b, 0.0, points=50)
    assert pct.unit == "%"
    assert len(pct.rows) == 50
    assert len(pct.sectors) == 3


def test_trace_without_gps_or_enough_frames() -> None:
    lap = LapInfo(1, 3, 1, "x", 10.0, 30.0, 20.0, 1.0, False)
    times = np.linspace(10.0, 30.0, 200)
    pct = np.linspace(0.0, 0.999, 200)
    pct[0] = 0.998  # the previous lap's distance for one tick after the line
    trace = lap_trace_from_frames(lap, {"SessionTime": times, "LapDistPct": pct})
    assert trace is not None
    assert not trace.has_gps
    assert trace.pct[1] == 0.0
    assert np.all(np.diff(trace.pct) >= 0)
    zeros = {"Lat": np.zeros(200), "Lon": np.zeros(200)}
    frames = {"SessionTime": times, "LapDistPct": pct, **zeros}
    no_fix = lap_trace_from_frames(lap, frames)
    assert no_fix is not None
    assert not no_fix.has_gps
    short = {"SessionTime": times[:5], "LapDistPct": pct[:5]}
    assert lap_trace_from_frames(lap, short) is None


# ---- track outline ---------------------------------------------------------------------
async def test_outline_from_the_best_laps_gps(
    data: SessionData, imported: ImportedDb
) -> None:
    outline = await data.outline(imported.session_key)
    assert outline.kind == "gps"
    history = await data.history(imported.session_key)
    assert history is not None
    assert history.best is not None
    assert f"lap {history.best.number}" in outline.note
    _x, _y, width, height = outline.bounds(margin=0)
    # The simulator's paperclip: two 240 m straights, turns of 58 m radius.
    assert width == pytest.approx(240 + 2 * 58, abs=3)
    assert height == pytest.approx(2 * 58, abs=3)
    # The car's live GPS lands on the outline at its lap distance.
    for pct in (0.0, 0.3, 0.77):
        point = track_point(pct * TRACK_M)
        lat = ORIGIN_LAT + point.y / 111_320.0
        lon = ORIGIN_LON + point.x / (111_320.0 * math.cos(math.radians(ORIGIN_LAT)))
        projected = outline.project(lat, lon)
        assert projected is not None
        on_line = outline.at_pct(pct)
        assert math.dist(projected, on_line) < 3.0
    # The first pit visit traces the pit lane.
    assert len(outline.pit_lane) > 5
    assert await data.outline(imported.session_key) is outline


async def test_outline_borrowed_from_an_earlier_session_at_the_track(
    data: SessionData, imported: ImportedDb
) -> None:
    outline = await data.outline(imported.stub_key)
    assert outline.kind == "gps"
    assert "earlier session" in outline.note


async def test_outline_falls_back_to_an_oval(data: SessionData) -> None:
    outline = await data.outline("never-stored")
    assert outline.kind == "oval"
    assert outline.project(36.6, -79.8) is None
    x, y = outline.at_pct(0.0)
    assert (round(x), round(y)) == (0, -100)
    assert oval_outline("why").note.startswith("schematic oval: why")


# ---- session info ---------------------------------------------------------------------
async def test_extras_of_the_simulated_session(
    data: SessionData, imported: ImportedDb
) -> None:
    extras = await data.extras(imported.session_key)
    assert extras.own_car_number == "42"
    assert extras.car_numbers == (("42", "PitBox Racing"),)
    assert extras.camera_groups == ()
    assert (await data.extras("nope")).car_numbers == ()


def test_session_extras_parses_camera_groups_and_sectors() -> None:
    info = {
        "CameraInfo": {
            "Groups": [
                {"GroupNum": 2, "GroupName": "Gearbox"},
                {"GroupNum": 1, "GroupName": "Nose"},
                {"GroupName": "broken"},
            ]
        },
        "DriverInfo": {
            "DriverCarIdx": 1,
            "Drivers": [
                {"CarIdx": 0, "CarNumber": "0", "CarIsPaceCar": 1},
                {"CarIdx": 1, "CarNumber": "7", "TeamName": "Us"},
                {"CarIdx": 2, "CarNumber": "12", "UserName": "Them"},
            ],
        },
        "SplitTimeInfo": {
            "Sectors": [
                {"SectorNum": 0, "SectorStartPct": 0.0},
                {"SectorNum": 1, "SectorStartPct": 0.4},
            ]
        },
    }
    extras = session_extras(info)
    assert extras.camera_groups == ((1, "Nose"), (2, "Gearbox"))
    assert extras.car_numbers == (("7", "Us"), ("12", "Them"))
    assert extras.own_car_number == "7"
    assert extras.sector_starts == (0.0, 0.4)
    assert session_extras({}) == type(extras)()


# ---- a real iRacing recording ---------------------------------------------------------
async def test_real_martinsville_recording(tmp_path: Path) -> None:
    ibt = real_file("iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt")
    url = f"sqlite:///{tmp_path / 'real.sqlite3'}"
    assert pitbox(["import", "--quiet", str(ibt), "--db", url]) == 0
    store = SessionData(url)
    try:
        key = await store.latest_session_key()
        assert key is not None
        history = await store.history(key)
        assert history is not None
        best = history.best
        assert best is not None
        assert best.lap_time == pytest.approx(19.301, abs=0.02)  # iRacing's own time
        outline = await store.outline(key)
        assert outline.kind == "gps"
        _x, _y, width, height = outline.bounds(margin=0)
        # Martinsville's paperclip runs north-south: ~320 m long, ~190 m across.
        assert 280 < max(width, height) < 380
        assert 150 < min(width, height) < 230
        extras = await store.extras(key)
        assert extras.own_car_number == "82"
        assert (9, "Cockpit") in extras.camera_groups
        assert len(extras.car_numbers) == 9
        assert extras.sector_starts == (0.0, 0.5)
    finally:
        store.close()


# ---- the crew's file --------------------------------------------------------------------
async def test_crew_store_persists_ticks_and_log(tmp_path: Path) -> None:
    path = tmp_path / "crew" / "dashboard-crew.json"
    store = CrewStore(path)
    key = handoff_key("car1", "s1", 3)
    assert store.checklist(key).ticked == {}
    for item in ("fuel", "tyres", "brake_bias"):
        await store.tick(key, item, True)
    await store.set_next_driver(key, "Bea Sim")
    assert not store.checklist(key).complete
    await store.tick(key, "shim", True)
    assert store.checklist(key).complete
    await store.tick(key, "tyres", False)
    entry = LogEntry(1.0, "car1", "s1", "message", "Box", "confirmed", "shown")
    await store.add_log(entry)
    assert store.version == 7

    again = CrewStore(path)
    checklist = again.checklist(key)
    assert set(checklist.ticked) == {"fuel", "brake_bias", "shim"}
    assert checklist.next_driver == "Bea Sim"
    assert again.log() == (entry,)
    assert again.log(car="car2") == ()
    assert not path.with_name(path.name + ".tmp").exists()


def test_crew_store_ignores_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "dashboard-crew.json"
    path.write_text("{not json")
    assert CrewStore(path).checklist("k").ticked == {}
    path.write_text('{"version": 1, "checklists": {"k": {"ticked": {"fuel": "x"}}}}')
    assert CrewStore(path).checklist("k").ticked == {}
