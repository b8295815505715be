"""Faults: kill -9 of the core mid-race and of the shim; nothing acknowledged is lost, nothing twice."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.broker import free_port
from tests.appliance_fixtures import wait_for
from tests.broker_fixtures import BrokerHandle

LAPS = 10


def lap_rows(db: Path) -> list[tuple[int, float | None]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return list(
                conn.execute("SELECT lap_number, lap_time FROM laps ORDER BY end_time")
            )
    except sqlite3.OperationalError:
        return []  # schema not created yet


def start_core(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pitbox_appliance.core", "--config", str(config)],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.timeout(240)
def test_core_killed_twice_mid_race_loses_nothing(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    key = os.urandom(32)
    db = tmp_path / "core.sqlite3"
    config = tmp_path / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": broker.appliance_user,
                },
                "core": {"db_url": f"sqlite:///{db}", "api_port": free_port()},
            }
        )
    )
    env = {
        **os.environ,
        "PITBOX_TEAM_KEY": key.hex(),
        "PITBOX_MQTT_PASSWORD": broker.appliance_password,
    }
    log = tmp_path / "core.log"
    core = start_core(config, env, log)
    try:
        assert wait_for(lambda: "connected to" in log.read_text(), timeout=30)
        from driver_pc.service import ShimConfig, ShimService
        from driver_pc.transport.mqtt import BrokerAddress

        shim = ShimService(
            ShimConfig(
                source=broker.driver_user,
                broker=BrokerAddress(
                    broker.host, broker.port, broker.driver_user, broker.driver_password
                ),
                team_key=key,
                spool_path=str(tmp_path / "shim.spool"),
            ),
            RaceSimulatorAdapter(laps=LAPS, speed=12.0, seed=21),
        )
        import threading

        stop = threading.Event()
        thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
        thread.start()
        for round_ in range(2):
            assert wait_for(lambda n=round_: len(lap_rows(db)) >= 2 + 3 * n, timeout=60)
            core.send_signal(
                signal.SIGKILL
            )  # no clean shutdown, mid-transaction or not
            core.wait(timeout=10)
            time.sleep(
                1.5
            )  # the shim keeps racing; the broker keeps the core's messages
            core = start_core(config, env, log)
        thread.join(timeout=120)
        assert shim.final_spool_depth == 0
        assert wait_for(lambda: len(lap_rows(db)) >= LAPS + 1, timeout=60)
        time.sleep(0.5)
        laps = lap_rows(db)
        numbers = [n for n, _t in laps]
        assert numbers == list(range(0, LAPS + 1))  # every lap, once, in order
        times = [t for _n, t in laps[1:]]
        assert all(t is not None and 24.0 < t < 30.0 for t in times), times
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            chunks = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT seq) FROM telemetry_chunks"
            ).fetchone()
        assert chunks[0] == chunks[1]  # no telemetry chunk stored twice
    finally:
        core.send_signal(signal.SIGTERM)
        try:
            core.wait(timeout=15)
        except subprocess.TimeoutExpired:
            core.kill()
