"""Test data for reports and statboards: three simulated sessions with CarSetup, imported and compacted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.test_compaction import import_into, readonly_engine

SETUP_A = "CarSetup:\n UpdateCount: 1\n Chassis:\n  Front:\n   ToeIn: -1.0 mm\n   BrakeBias: 56.0%\n  Rear:\n   ARB: 3\n"
SETUP_B = "CarSetup:\n UpdateCount: 2\n Chassis:\n  Front:\n   ToeIn: -2.5 mm\n   BrakeBias: 56.0%\n  Rear:\n   ARB: 5\n"
# (file name, setup, simulator options): oldest first
SESSIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("a.ibt", SETUP_A, {"laps": 5, "seed": 7}),
    ("b.ibt", SETUP_B, {"laps": 6, "seed": 3, "start_fuel": 1.8}),
    ("c.ibt", SETUP_B, {"laps": 2, "seed": 11, "drivers": ("Bea Sim", "Alex Sim")}),
)
# What the mistake detector stores (pitbox_appliance/detectors/mistakes.py), put into
# session 2 as that detector would; the simulator's driver makes none of its own.
MISTAKES = (
    (
        100.0,
        {
            "mistake": "braking",
            "lap": 3,
            "lap_dist_pct": 0.27,
            "section": 2,
            "severity": 0.8,
            "driver": "Alex Sim",
        },
    ),
    (
        150.0,
        {
            "mistake": "braking",
            "lap": 5,
            "lap_dist_pct": 0.28,
            "section": 2,
            "severity": 0.5,
            "driver": "Alex Sim",
        },
    ),
    (
        170.0,
        {
            "mistake": "line",
            "lap": 6,
            "lap_dist_pct": 0.71,
            "section": 7,
            "severity": 0.3,
            "driver": "Alex Sim",
        },
    ),
)


@dataclass(frozen=True)
class Team:
    """Three sessions of one team in a database and compacted in an outbox."""

    db_url: str
    outbox: Path
    paths: tuple[str, ...]  # compacted set paths, oldest first


_CACHE: dict[str, Team] = {}


def write_ibt_with_setup(path: Path, setup_yaml: str, **options: Any) -> Path:
    """A simulated .ibt whose session info YAML carries a CarSetup section."""
    from driver_pc.adapters.ibt_file import IbtWriter
    from driver_pc.adapters.simulator import RaceSimulatorAdapter

    sim = RaceSimulatorAdapter(speed=0, **options)
    writer = IbtWriter(
        path, list(sim.channels), sim.session_info_text() + setup_yaml, sim.tick_rate
    )
    for rows in sim.ticks():
        writer.write(rows)
    writer.close()
    return path


def build_team(root: Path) -> Team:
    """Build (once per test run) the three sessions; later calls reuse them."""
    if "team" in _CACHE:
        return _CACHE["team"]
    from pitbox_appliance.compaction import compact_session
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    root.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{root / 'team.sqlite3'}"
    for name, setup, options in SESSIONS:
        import_into(db_url, write_ibt_with_setup(root / name, setup, **options))
    engine = open_database(db_url)
    writer = SessionWriter(engine)
    for at, payload in MISTAKES:
        writer.add_event(2, "mistake", at, payload)
    writer.commit()
    writer.close()
    engine.dispose()
    outbox = root / "outbox"
    engine = readonly_engine(db_url)
    paths = tuple(compact_session(engine, i, outbox).path for i in (1, 2, 3))
    engine.dispose()
    _CACHE["team"] = Team(db_url, outbox, paths)
    return _CACHE["team"]
