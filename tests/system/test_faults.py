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

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from tests.conftest import (
    BrokerHandle,
    core_config_file,
    driver_shim,
    start_core_process,
    wait_for,
)

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


@pytest.mark.timeout(240)
def test_core_killed_twice_mid_race_loses_nothing(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    key = os.urandom(32)
    db = tmp_path / "core.sqlite3"
    config = core_config_file(tmp_path, broker, db)
    env = {
        **os.environ,
        "PITBOX_TEAM_KEY": key.hex(),
        "PITBOX_MQTT_PASSWORD": broker.appliance_password,
    }
    log = tmp_path / "core.log"
    core = start_core_process(config, env, log)
    try:
        assert wait_for(lambda: "connected to" in log.read_text(), timeout=30)

        shim = driver_shim(
            broker,
            key,
            tmp_path / "shim.spool",
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
            core = start_core_process(config, env, log)
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


@pytest.mark.timeout(240)
def test_shim_spool_survives_kill_9_while_broker_is_down(
    broker: BrokerHandle, tmp_path: Path
) -> None:

    key = os.urandom(32)
    spool = tmp_path / "shim.spool"
    env = {
        **os.environ,
        "PITBOX_TEAM_KEY": key.hex(),
        "PITBOX_MQTT_PASSWORD": broker.driver_password,
    }
    shim_cmd = [
        sys.executable,
        "-m",
        "driver_pc",
        "--source",
        broker.driver_user,
        "--port",
        str(broker.port),
        "--spool",
        str(spool),
        "--adapter",
        "simulator",
    ]
    broker.broker.stop()
    first = subprocess.Popen(
        [*shim_cmd, "--laps", "3", "--speed", "0", "--seed", "31"], env=env
    )

    def spooled() -> int:
        if not spool.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=5) as conn:
                return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.OperationalError:
            return 0

    # Kill it once the whole race is on disk: the spool has stopped growing (the
    # shim is then waiting to drain to the broker that is down).
    last = [-1, time.monotonic()]

    def race_spooled() -> bool:
        count = spooled()
        if count != last[0]:
            last[:] = [count, time.monotonic()]
        return count > 1000 and time.monotonic() - last[1] > 1.5

    assert wait_for(race_spooled, timeout=90)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    kept = spooled()
    assert kept > 1000
    from driver_pc.protocol.codec import Codec
    from driver_pc.protocol.messages import MessageType

    codec = Codec(key)
    with sqlite3.connect(spool) as conn:
        kinds = [
            codec.open_compressed(p)[2]
            for (p,) in conn.execute("SELECT payload FROM outbox")
        ]
    spooled_batches = kinds.count(MessageType.TELEMETRY)

    broker.broker.start()
    db = tmp_path / "core.sqlite3"
    config = core_config_file(tmp_path, broker, db)
    core_env = {**env, "PITBOX_MQTT_PASSWORD": broker.appliance_password}
    log = tmp_path / "core.log"
    core = start_core_process(config, core_env, log)
    try:
        assert wait_for(lambda: "connected to" in log.read_text(), timeout=30)
        # The restarted shim sends what the killed one spooled before its own data.
        second = subprocess.run(
            [*shim_cmd, "--laps", "1", "--speed", "0", "--seed", "32"],
            env=env,
            timeout=120,
            check=False,
        )
        assert second.returncode == 0
        assert spooled() == 0

        def stored_batches() -> dict[str, int]:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return dict(
                    conn.execute(
                        "SELECT s.session_key, COUNT(c.id) FROM sessions s JOIN"
                        " telemetry_chunks c ON c.session_id = s.id GROUP BY s.session_key"
                    )
                )

        # Every batch the killed shim had spooled arrives, once.
        assert wait_for(lambda: stored_batches().get("sim-31-3") == spooled_batches, 60)
        assert len(lap_rows(db)) >= 2
    finally:
        core.send_signal(signal.SIGTERM)
        try:
            core.wait(timeout=15)
        except subprocess.TimeoutExpired:
            core.kill()
