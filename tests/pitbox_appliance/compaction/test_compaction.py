"""Compaction: a stored session → partitioned Parquet files + manifest, values at their stated precision."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from driver_pc.protocol.channels import ChannelKind, ChannelSpec
from driver_pc.protocol.manifest import sha256_of
from driver_pc.protocol.messages import ChannelDictionary
from pitbox_appliance.compaction import (
    AlreadyCompactedError,
    Manifest,
    compact_session,
)
from pitbox_appliance.compaction import command as compact_command
from pitbox_appliance.compaction.telemetry import TelemetryWriter, decimal_scale
from pitbox_appliance.storage.models import (
    ChannelSet,
    Lap,
    RaceSession,
    Stint,
    TelemetryChunk,
)
from pitbox_appliance.storage.reader import ChunkDecoder, SessionReader
from tests.conftest import import_into, readonly_engine, real_file

MARTINSVILLE = ("iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt")


def stored_frames(engine: Engine, session_id: int) -> np.ndarray[Any, Any]:
    """Every stored frame of a session, decoded the way the appliance stores them."""
    with Session(engine) as db:
        dictionaries = {
            d.dict_id: d
            for d in (
                ChannelDictionary.from_json(dict(c.definition))
                for c in db.scalars(select(ChannelSet))
            )
        }
    # Delta-chained chunks decode in order, each on the one before it of its source.
    decode = ChunkDecoder(dictionaries)
    return np.concatenate(
        [
            batch.frames
            for _c, batch in decode.batches(SessionReader(engine).chunks(session_id))
        ]
    )


def assert_telemetry_matches(
    table: pa.Table, frames: np.ndarray[Any, Any], channels: tuple[ChannelSpec, ...]
) -> float:
    """Integers bit-exact, floats within half their quantum; returns the worst error in quanta."""
    assert table.num_rows == len(frames)
    worst = 0.0
    for spec in channels:
        assert spec.count == 1  # .ibt channels here are scalars
        column = table[spec.name]
        expected = frames[spec.name]
        if spec.quantum is None:
            got = column.to_numpy(zero_copy_only=False)
            if spec.kind is ChannelKind.BOOL:
                assert np.array_equal(got, expected != 0), spec.name
            else:
                assert got.dtype == expected.dtype, spec.name
                assert np.array_equal(got, expected), spec.name
            continue
        assert pa.types.is_decimal(column.type), spec.name
        assert column.type.scale == decimal_scale(spec.quantum)
        got = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        err = np.abs(got - expected.astype(np.float64)) / spec.quantum
        worst = max(worst, float(err.max()))
        # Half a quantum, plus float64 rounding of the comparison itself.
        assert err.max() <= 0.5 + 1e-6, (spec.name, float(err.max()))
    return worst


@pytest.fixture(scope="module")
def sim_db(tmp_path_factory: pytest.TempPathFactory, sim_ibt: Path) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'sim.sqlite3'}"
    import_into(url, sim_ibt)
    return url


@pytest.fixture(scope="module")
def compacted(
    sim_db: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Manifest, Path]:
    outbox = tmp_path_factory.mktemp("outbox")
    engine = readonly_engine(sim_db)
    manifest = compact_session(engine, 1, outbox)
    engine.dispose()
    return manifest, outbox / manifest.path


def test_layout_files_and_manifest(
    compacted: tuple[Manifest, Path], sim_db: str
) -> None:
    manifest, root = compacted
    assert manifest.path == (
        "team=pitbox-racing/season="
        f"{manifest.partition.season}/track=martinsville-speedway-simulated/"
        f"session={manifest.partition.session}"
    )
    assert root.as_posix().endswith(manifest.path)
    on_disk = json.loads((root / "manifest.json").read_text())
    assert on_disk["schema_version"] == 1
    assert Manifest.from_json(on_disk) == manifest
    # Every file listed, with its true size, checksum and row count.
    listed = {f.path for f in manifest.files}
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert present == listed | {"manifest.json"}
    for entry in manifest.files:
        path = root / entry.path
        assert path.stat().st_size == entry.bytes
        assert sha256_of(path) == entry.sha256
        if entry.table == "session_info":
            continue  # the YAML as stored; checked below
        if entry.table == "driver_profiles":  # JSON (docs/training.md)
            profiles = json.loads(path.read_text())["profiles"]
            assert len(profiles) == entry.rows
            continue
        assert pq.ParquetFile(path).metadata.num_rows == entry.rows
        assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == (
            "ZSTD"
        )
    engine = readonly_engine(sim_db)
    with Session(engine) as db:
        laps = db.scalars(select(Lap).order_by(Lap.end_time)).all()
        stints = db.scalars(select(Stint)).all()
        race = db.get(RaceSession, 1)
        assert race is not None
        frames = sum(c.frames for c in db.scalars(select(TelemetryChunk)))
    engine.dispose()
    assert manifest.file("laps").rows == len(laps)
    assert manifest.file("stints").rows == len(stints)
    assert manifest.file("telemetry").rows == frames
    assert manifest.session["session_key"] == race.session_key
    assert manifest.session["season_source"] == "stored_at"  # the sim gives no date
    yaml_text = (root / manifest.file("session_info").path).read_text()
    assert yaml_text == race.session_info
    assert list((root.parents[3] / ".staging").iterdir()) == []


def test_laps_and_session_analytics(
    compacted: tuple[Manifest, Path], sim_db: str
) -> None:
    manifest, root = compacted
    engine = readonly_engine(sim_db)
    with Session(engine) as db:
        laps = db.scalars(select(Lap).order_by(Lap.end_time)).all()
        table = pq.read_table(root / "laps" / "laps.parquet")
        assert table["lap_number"].to_pylist() == [lap.lap_number for lap in laps]
        # Lap times are stored as float64: bit-equal to the database.
        assert table["lap_time"].to_pylist() == [lap.lap_time for lap in laps]
        assert set(table["driver_name"].to_pylist()) == {"Alex Sim"}
    engine.dispose()
    analytics = manifest.analytics
    timed = [
        lap.lap_time for lap in laps if lap.lap_time is not None and not lap.pit_lap
    ]
    stints = analytics["stints"]
    assert sum(s["laps"] for s in stints) == len(laps)
    first = stints[0]
    assert first["driverName"] == "Alex Sim"
    assert first["driverId"] == "900001"
    assert first["bestLapTime"] == min(timed)
    assert math.isclose(first["avgLapTime"], sum(timed) / len(timed))
    lap_fuel = sum(lap.fuel_used for lap in laps if lap.fuel_used is not None)
    # Telemetry-based fuel covers the untimed first lap too: at least the laps' sum.
    assert lap_fuel - 1e-3 <= first["fuelUsed"] <= lap_fuel * 1.5
    assert_analytics_match_database(analytics, engine, sim_db_frames(sim_db))
    assert analytics["date"] is None  # the simulated session info carries no date
    session = pq.read_table(root / "session" / "session.parquet").to_pylist()[0]
    assert session["laps"] == len(laps)
    assert session["best_lap_time"] == min(timed)
    assert session["drivers"] == ["Alex Sim"]


def test_telemetry_within_stated_precision(
    compacted: tuple[Manifest, Path], sim_db: str
) -> None:
    manifest, root = compacted
    engine = readonly_engine(sim_db)
    frames = stored_frames(engine, 1)
    with Session(engine) as db:
        definition = db.scalars(select(ChannelSet.definition)).one()
    channels = ChannelDictionary.from_json(dict(definition)).channels
    table = pq.read_table(root / "telemetry" / "telemetry.parquet")
    assert_telemetry_matches(table, frames, channels)
    speed = table.schema.field("Speed")
    assert speed.metadata[b"pitbox.quantum"] == b"0.001"
    assert speed.metadata[b"pitbox.unit"] == b"m/s"
    assert table.schema.field("Gear").type == pa.int32()
    assert table.schema.field("OnPitRoad").type == pa.bool_()
    assert set(table["source"].unique().to_pylist()) == set(
        manifest.telemetry["sources"]
    )
    described = {c["column"]: c for c in manifest.telemetry["columns"]}
    assert described["SessionTime"]["quantum"] == 1e-6
    assert described["SessionTime"]["type"] == "decimal64(18, 6)"


def test_already_compacted_and_replace(
    compacted: tuple[Manifest, Path], sim_db: str
) -> None:
    manifest, root = compacted
    outbox = root.parents[3]
    engine = readonly_engine(sim_db)
    with pytest.raises(AlreadyCompactedError):
        compact_session(engine, 1, outbox)
    again = compact_session(engine, 1, outbox, replace=True)
    engine.dispose()
    assert again.path == manifest.path
    # Same data, same files (only the manifest's creation time may differ).
    assert [f.sha256 for f in again.files] == [f.sha256 for f in manifest.files]
    assert list((outbox / ".staging").iterdir()) == []


def test_compact_command(sim_db: str, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    compact_command.add_command(parser.add_subparsers())
    outbox = tmp_path / "outbox"

    def run(*argv: str) -> int:
        args = parser.parse_args(
            ["compact", "--db", sim_db, "--outbox", str(outbox), *argv]
        )
        return int(args.handler(args))

    assert run() == 0
    assert (
        len(list(outbox.glob("team=*/season=*/track=*/session=*/manifest.json"))) == 1
    )
    assert run() == 0  # nothing new to do
    assert run("--session", "1") == 1  # already there, and not replaced
    assert run("--session", "1", "--replace") == 0
    assert run("--session", "99") == 2
    assert run("--team", "Night Owls") == 0
    assert list(outbox.glob("team=night-owls/*/*/*/manifest.json"))
    args = parser.parse_args(["compact", "--db", f"sqlite:///{tmp_path / 'nope.db'}"])
    assert args.handler(args) == 2


def test_unrepresentable_values_kept_in_exceptions(tmp_path: Path) -> None:
    k = ChannelKind
    channels = (
        ChannelSpec("SessionTime", k.DOUBLE, 1, "s"),
        ChannelSpec("Speed", k.FLOAT, 1, "m/s"),
        ChannelSpec("OnPitRoad", k.BOOL, 1, ""),
        ChannelSpec("CarIdxLap", k.INT, 3, ""),
    )
    other = (
        ChannelSpec("SessionTime", k.DOUBLE, 1, "s"),
        ChannelSpec("Gear", k.INT, 1, ""),
    )
    first = ChannelDictionary("s1", 60, channels)
    second = ChannelDictionary("s1", 60, other)
    writer = TelemetryWriter([first, second])
    writer.open(tmp_path / "t.parquet")
    frames = np.zeros(4, dtype=first.dtype)
    frames["SessionTime"] = [0.0, 1 / 60, 2 / 60, 3 / 60]
    frames["Speed"] = [1.2344, np.nan, np.inf, 3e30]
    frames["OnPitRoad"] = [0, 1, 2, 1]
    frames["CarIdxLap"] = [[1, 2, 3]] * 4
    writer.add("pc1", frames)
    more = np.zeros(2, dtype=second.dtype)
    more["SessionTime"] = [4 / 60, 5 / 60]
    more["Gear"] = [3, 4]
    writer.add("pc2", more)
    assert writer.close(tmp_path / "e.parquet")
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column_names == [
        "source",
        "SessionTime",
        "Speed",
        "OnPitRoad",
        "CarIdxLap_0",
        "CarIdxLap_1",
        "CarIdxLap_2",
        "Gear",
    ]
    assert table["source"].to_pylist() == ["pc1"] * 4 + ["pc2"] * 2
    assert [None if v is None else float(v) for v in table["Speed"].to_pylist()] == [
        1.234,
        None,
        None,
        None,
        None,
        None,
    ]
    assert table["OnPitRoad"].to_pylist() == [False, True, None, True, None, None]
    assert table["CarIdxLap_2"].to_pylist() == [3, 3, 3, 3, None, None]
    assert table["Gear"].to_pylist() == [None] * 4 + [3, 4]
    exceptions = {
        (e["row"], e["column"]): e["value"]
        for e in pq.read_table(tmp_path / "e.parquet").to_pylist()
    }
    assert set(exceptions) == {
        (1, "Speed"),
        (2, "Speed"),
        (3, "Speed"),
        (2, "OnPitRoad"),
    }
    assert math.isnan(exceptions[1, "Speed"])
    assert exceptions[2, "Speed"] == math.inf
    assert exceptions[3, "Speed"] == float(np.float32(3e30))  # exact, as sent
    assert exceptions[2, "OnPitRoad"] == 2.0


def test_real_martinsville_at_most_one_byte_per_value(tmp_path: Path) -> None:
    path = real_file(*MARTINSVILLE)
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    import_into(url, path)
    engine = readonly_engine(url)
    manifest = compact_session(engine, 1, tmp_path / "outbox")
    frames = stored_frames(engine, 1)
    with Session(engine) as db:
        definition = db.scalars(select(ChannelSet.definition)).one()
    channels = ChannelDictionary.from_json(dict(definition)).channels
    telemetry = manifest.file("telemetry")
    assert manifest.telemetry["values"] == len(frames) * len(channels)
    per_value = telemetry.bytes / manifest.telemetry["values"]
    assert per_value <= 1.0, per_value  # DESIGN §6 storage target
    root = tmp_path / "outbox" / manifest.path
    table = pq.read_table(root / telemetry.path)
    assert_telemetry_matches(table, frames, channels)
    assert manifest.analytics["trackId"] == "33"
    assert manifest.partition.track == "martinsville-speedway"
    assert_analytics_match_database(manifest.analytics, engine, frames)
    engine.dispose()


def test_laps_table_carries_invalid_and_refuelled(tmp_path: Path) -> None:
    """Martinsville's lap 31 starts in the pit stall after a reset: iRacing gave -1."""
    url = f"sqlite:///{tmp_path / 'm.sqlite3'}"
    import_into(url, real_file(*MARTINSVILLE))
    engine = readonly_engine(url)
    manifest = compact_session(engine, 1, tmp_path / "outbox")
    engine.dispose()
    root = tmp_path / "outbox" / manifest.path
    table = pq.read_table(root / manifest.file("laps").path)
    assert table.schema.field("invalid").type == pa.bool_()
    assert table.schema.field("refuelled").type == pa.bool_()
    rows = table.select(["lap_number", "lap_time", "invalid", "refuelled"]).to_pylist()
    assert [(r["lap_number"], r["invalid"], r["refuelled"]) for r in rows] == [
        (31, True, False),
        (32, False, False),
        (33, False, False),
    ]
    assert rows[0]["lap_time"] is None
    session = pq.read_table(root / "session" / "session.parquet").to_pylist()[0]
    assert session["best_lap_time"] == min(r["lap_time"] for r in rows[1:])
    # Filed under the season the sim dated it (WeekendOptions.Date), not today's.
    assert manifest.partition.season == 2015
    assert manifest.session["season_source"] == "session_info"
    assert "/season=2015/" in f"/{manifest.path}/"


def sim_db_frames(db_url: str) -> np.ndarray[Any, Any]:
    engine = readonly_engine(db_url)
    try:
        return stored_frames(engine, 1)
    finally:
        engine.dispose()


def assert_analytics_match_database(
    analytics: dict[str, Any], engine: Engine, frames: np.ndarray[Any, Any]
) -> None:
    """SessionAnalytics' filled fields, checked against the stored rows and telemetry."""
    from pitbox_appliance.storage.models import Event

    with Session(engine) as db:
        laps = db.scalars(select(Lap).order_by(Lap.end_time)).all()
        incidents = db.scalars(
            select(Event).where(Event.kind == "incident_detected")
        ).all()
    stints = analytics["stints"]
    assert sum(s["incidents"] for s in stints) == len(incidents)
    timed = [
        lap.lap_time
        for lap in laps
        if lap.lap_time is not None and not lap.pit_lap and not lap.invalid
    ]
    for stint in stints:
        if stint["timedLaps"] >= 3:
            # A robust spread: positive, and below the stint's whole range.
            assert 0 < stint["consistency"] < max(timed) - min(timed)
        if stint["fuelPerLap"] is not None:
            green = [
                lap.fuel_used
                for lap in laps
                if lap.fuel_used and not (lap.pit_lap or lap.invalid or lap.refuelled)
            ]
            assert min(green) <= stint["fuelPerLap"] <= max(green)
            assert 0.5 < stint["fuelEfficiency"] < 2.0
    names = frames.dtype.names or ()
    if "LFwearM" in names:
        # Without a tyre change the tread used is the first reading minus the last;
        # iRacing measures only in the pit box, so unchanged readings give null.
        means = {
            corner: sum(frames[f"{corner}wear{t}"].astype(float) for t in "LMR") / 3
            for corner in ("LF", "RF", "LR", "RR")
        }
        drops = {c: float(m[0] - m[-1]) for c, m in means.items()}
        wear = stints[-1]["tireWear"]
        if not any(drops.values()):
            assert wear is None
        else:
            assert wear["frontLeft"] == pytest.approx(drops["LF"], abs=1e-4)
            assert wear["rearRight"] == pytest.approx(drops["RR"], abs=1e-4)
    else:
        assert all(s["tireWear"] is None for s in stints)
    overall = analytics["overallPerformance"]
    assert overall["paceRelativeToOptimal"] == pytest.approx(
        min(timed) / (sum(timed) / len(timed))
    )
    scores = [v for k, v in overall.items() if k.endswith("Score") and v is not None]
    assert scores
    assert all(0.0 <= v <= 100.0 for v in scores)
    for spot in (h for s in stints for h in s["mistakeHotspots"]):
        assert spot["frequency"] >= 1
        assert spot["type"] in {"braking", "throttle", "line", "spin"}


def test_tyre_wear_is_measured_at_the_stop(tmp_path: Path) -> None:
    """The endurance simulator publishes tread like iRacing: measured in the pit box."""
    from driver_pc.adapters.simulator import write_simulated_ibt

    url = f"sqlite:///{tmp_path / 'e.sqlite3'}"
    race = write_simulated_ibt(
        tmp_path / "e.ibt", laps=12, seed=7, endurance=True, start_fuel=3.0
    )
    import_into(url, race)
    engine = readonly_engine(url)
    manifest = compact_session(engine, 1, tmp_path / "outbox")
    frames = stored_frames(engine, 1)
    engine.dispose()
    first, second = manifest.analytics["stints"]
    wear = first["tireWear"]
    # What the stop measured: the lowest mean tread before the fresh set went on.
    for key, corner in (("frontLeft", "LF"), ("frontRight", "RF")):
        mean = sum(frames[f"{corner}wear{t}"].astype(float) for t in "LMR") / 3
        assert wear[key] == pytest.approx(mean[0] - mean.min(), abs=1e-4)
    # An oval turns left: the right-hand tyres work harder.
    assert wear["frontRight"] > wear["frontLeft"]
    assert wear["rearRight"] > wear["rearLeft"]
    assert second["tireWear"] is None  # no stop after it: unmeasured
    overall = manifest.analytics["overallPerformance"]
    assert 0.0 < overall["tireManagementScore"] < 100.0
