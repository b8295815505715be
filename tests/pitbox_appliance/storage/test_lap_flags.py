"""The laps table's invalid and refuelled flags: migration 0006, writer and reader."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from pitbox_appliance.storage.database import MIGRATIONS, open_database, upgrade
from pitbox_appliance.storage.models import Lap
from pitbox_appliance.storage.reader import SessionReader
from pitbox_appliance.storage.writer import SessionWriter


def _config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["configure_logger"] = False
    return cfg


def _lap_columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[1] for row in conn.execute("PRAGMA table_info(laps)")}


def test_0006_follows_the_head_before_it_in_one_chain() -> None:
    script = ScriptDirectory.from_config(_config("sqlite://"))
    assert len(script.get_heads()) == 1  # one chain (0007: driver profiles, on top)
    lap_flags = script.get_revision("0006")
    assert lap_flags is not None
    assert lap_flags.down_revision in {"0004", "0005"}  # 0005: the dead-letter table
    chain = [r.revision for r in script.walk_revisions()]
    assert chain.index("0006") < chain.index("0005")  # newest first: 0006 after 0005


def test_migration_adds_false_flags_to_stored_laps_and_back(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    cfg = _config(url)
    before = ScriptDirectory.from_config(cfg).get_revision("0006")
    assert before is not None
    previous = str(before.down_revision)
    command.upgrade(cfg, previous)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO sessions (session_key, car, track, track_length_km,"
            " subsession_id, created_at, session_info)"
            " VALUES ('k', 'c', '', 0, 0, 0, '')"
        )
        conn.execute(
            "INSERT INTO laps (session_id, lap_number, end_time, lap_time, pit_lap)"
            " VALUES (1, 3, 100.0, 15.1, 0)"
        )
    assert "invalid" not in _lap_columns(path)
    upgrade(url)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT invalid, refuelled FROM laps").fetchall() == [
            (0, 0)
        ]
    command.downgrade(cfg, previous)
    assert not {"invalid", "refuelled"} & _lap_columns(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT lap_number, lap_time FROM laps").fetchall() == [
            (3, 15.1)
        ]


@pytest.fixture
def reader(tmp_path: Path) -> SessionReader:
    engine = open_database(f"sqlite:///{tmp_path / 'p.db'}")
    writer = SessionWriter(engine)
    sid = writer.session_id("race", "car1")
    laps = [
        # number, end, time, fuel, pit, invalid, refuelled
        (1, 100.0, None, None, True, True, True),  # reset to the pits: no time
        (2, 115.0, 15.2, 0.2, False, False, False),
        (3, 130.1, 15.1, 0.2, False, False, False),
        (4, 150.0, None, None, True, False, True),  # a stop with fuel
    ]
    for number, end, time, fuel, pit, invalid, refuelled in laps:
        writer.add_lap(
            Lap(
                session_id=sid,
                lap_number=number,
                start_time=end - 15.0,
                end_time=end,
                lap_time=time,
                fuel_used=fuel,
                pit_lap=pit,
                invalid=invalid,
                refuelled=refuelled,
            )
        )
    writer.commit()
    writer.close()
    return SessionReader(engine)


def test_reader_rows_carry_the_flags(reader: SessionReader) -> None:
    rows = reader.laps()
    assert [(r.lap_number, r.invalid, r.refuelled) for r in rows] == [
        (1, True, True),
        (2, False, False),
        (3, False, False),
        (4, False, True),
    ]
    assert [r.lap_number for r in reader.fastest_laps(rows[0].session_id)] == [3, 2]
    totals = reader.lap_totals(rows[0].session_id)
    assert totals.count == 4
    assert totals.best_lap_time == pytest.approx(15.1)
