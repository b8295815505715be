"""Fixtures of the dashboard tests: live-state payloads as the core publishes them, an imported session, logins."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driver_pc.adapters.simulator import (
    write_simulated_ibt,
)
from pitbox_appliance.cli import main as pitbox
from pitbox_appliance.security.users import USERS_FILE, UserStore


def live_payload(
    car: str = "car1",
    *,
    t: float = 100.0,
    lap: int = 5,
    speed: float = 50.0,
    throttle: float = 0.8,
    brake: float = 0.0,
    fuel: float = 40.0,
    session_key: str = "s1",
    driver: str = "Jane Doe",
    **extra: Any,
) -> bytes:
    """A state as CoreService._publish_live writes it (LiveCar.as_dict + extras)."""
    state: dict[str, Any] = {
        "car": car,
        "session_key": session_key,
        "session_id": 1,
        "track": "Martinsville",
        "driver": driver,
        "source": f"{car}-pc1",
        "values": {
            "SessionTime": t,
            "Lap": lap,
            "LapDistPct": 0.25,
            "Speed": speed,
            "Throttle": throttle,
            "Brake": brake,
            "Gear": 3,
            "RPM": 7000.0,
            "FuelLevel": fuel,
            "OnPitRoad": 0.0,
            "LapCurrentLapTime": 12.3,
        },
        "last_lap_time": 20.5,
        "best_lap_time": 20.1,
        "laps_completed": lap - 1,
        "fuel_per_lap": 2.5,
        "stint": 1,
        "recent_laps": [
            {"lap": 4, "time": 20.5, "fuel": 2.5, "pit": False, "driver": driver},
            {"lap": 3, "time": 20.1, "fuel": 2.4, "pit": False, "driver": driver},
        ],
        "published_at": time.time(),
        "shim": {
            "state": "streaming",
            "adapter": "simulator",
            "ticks": 1234,
            "spool_depth": 0,
            "session_key": session_key,
            "version": "0.1.0",
        },
    }
    state.update(extra)
    return json.dumps(state).encode()


def topic(car: str) -> str:
    return f"pitbox/v1/live/{car}/state"


@dataclass(frozen=True)
class ImportedDb:
    """A database filled by ``pitbox import`` and the sessions in it."""

    url: str
    path: Path
    session_key: str
    stub_key: str


def import_sim_session(directory: Path) -> ImportedDb:
    """Simulate 6 laps with a pit stop and import them; add a session just begun.

    The second session is what the core has stored of a session at the same track
    before its first lap completes: the row, no laps.
    """
    race = write_simulated_ibt(directory / "race.ibt", laps=6, start_fuel=2.0, seed=3)
    path = directory / "pitbox.sqlite3"
    url = f"sqlite:///{path}"
    assert pitbox(["import", "--quiet", str(race), "--db", url]) == 0
    with sqlite3.connect(path) as db:
        (key, track) = db.execute("SELECT session_key, track FROM sessions").fetchone()
        db.execute(
            "INSERT INTO sessions (session_key, car, track, track_length_km,"
            " subsession_id, created_at, session_info)"
            " VALUES ('just-begun', 'car2', ?, 0.8444, 0, 0, '')",
            (track,),
        )
    return ImportedDb(url, path, key, "just-begun")


STRATEGY: dict[str, Any] = {
    "fuel_per_lap": 2.41,
    "green_laps_used": 8,
    "laps_of_fuel": 12.4,
    "laps_remaining": 40.0,
    "fuel_to_finish": 96.4,
    "stops_needed": 1,
    "fuel_to_add": 66.5,
    "pit_window_open_lap": 31,
    "pit_window_close_lap": 35,
    "save_per_lap_to_skip_stop": 0.35,
    "race": {"kind": "laps", "laps_total": 60, "laps_left": 40, "laps_down": 0},
    "pit_loss_s": 31.2,
    "pit_loss": {"s": 31.2, "drive_through_s": 12.4, "source": "learned"},
    "tyres": {"advice": "change", "tyre_age_laps": 34, "loss_next_stint_s": 27.0},
    "driver_swap": {"advice": "swap", "driver": "Alex Sim", "next_driver": "Bea Sim"},
    "stint_plan": [
        {"stint": 2, "start_lap": 21, "end_lap": 33, "fuel_to_add": 30.0},
        {"stint": 3, "start_lap": 34, "end_lap": 60, "fuel_to_add": 66.5},
    ],
    "rejoin": {
        "position": 7,
        "class_position": 4,
        "gap_ahead_s": 1.8,
        "gap_behind_s": 2.3,
        "car_ahead": "17",
        "car_behind": "5",
    },
    "recommendation": {"action": "window_open", "reason": "window open", "lap": 31},
}


OTHERS: list[dict[str, Any]] = [
    {"idx": 3, "number": "17", "pct": 0.30, "pos": 4, "pit": False, "class_pos": 2,
     "class_id": 4001, "class_color": "#ffda59", "lap": 6, "laps_down": -1,
     "stops": 2, "laps_since_stop": 14,
     "last_stop": {"lap": 44, "duration_s": 27.4, "kind": "fuel"}},
    {"idx": 5, "number": "5", "pct": 0.24, "pos": 6, "pit": False, "class_id": 4002,
     "class_color": "0x33ceff", "lap": 5, "laps_down": 0, "stops": 0,
     "last_stop": None},
    {"idx": 8, "number": "8", "pct": 0.60, "pos": 9, "pit": True, "lap": 4,
     "laps_down": 1, "stops": 1},
]  # fmt: skip


def mistake(
    kind: str, pct: float, section: int, severity: float, driver: str
) -> dict[str, Any]:
    return {
        "mistake": kind,
        "lap": 3,
        "lap_dist_pct": pct,
        "section": section,
        "severity": severity,
        "driver": driver,
    }


# ---- logins (issue 14 §3) ---------------------------------------------------------------
#: The people every browser test's dashboard knows: name → (role, password).
LOGINS: dict[str, tuple[str, str]] = {
    "eng": ("engineer", "engineer-pass-1"),
    "crew": ("crew", "crew-pass-1"),
    "view": ("viewer", "viewer-pass-1"),
}


def add_logins(security_dir: Path, names: tuple[str, ...] = ("eng",)) -> None:
    """Put ``names`` (of LOGINS) in the dashboard's users file under ``security_dir``."""
    store = UserStore(security_dir / USERS_FILE)
    for name in names:
        role, password = LOGINS[name]
        store.add(name, role, password, replace=True)


def log_in(page: Any, base_url: str, name: str = "eng") -> None:
    """Log ``name`` in through the login form (``base_url`` ends with '/')."""
    from playwright.sync_api import expect

    page.goto(f"{base_url}login")
    page.get_by_test_id("login-name").fill(name)
    page.get_by_test_id("login-password").fill(LOGINS[name][1])
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("user")).to_contain_text(name, timeout=15_000)
    # The tab's socket is connected (NiceGUI reloads a tab whose handshake failed).
    page.wait_for_function("window.did_handshake === true", timeout=15_000)
