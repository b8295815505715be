"""Faults: "power" cut (kill -9) of the core in the middle of large SQLite transactions."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from tests.conftest import (
    BrokerHandle,
    core_config_file,
    driver_shim,
    expected_batches,
    start_core_process,
    stop_process,
    stored_counts,
    wait_for,
)

LAPS = 6
SEED = 71
CUTS = 4


def wal_bytes(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


@pytest.mark.timeout(200)
def test_power_cut_mid_transaction_keeps_database_whole(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    key = os.urandom(32)
    db = tmp_path / "core.sqlite3"
    # The shim races at full speed, so the broker holds a backlog that the core takes
    # in large transactions (800 messages, ~1 MB); the cuts land among them.
    config = core_config_file(
        tmp_path, broker, db, commit_interval_s=2.0, commit_max_messages=800
    )
    env = {
        **os.environ,
        "PITBOX_TEAM_KEY": key.hex(),
        "PITBOX_MQTT_PASSWORD": broker.appliance_password,
    }
    log = tmp_path / "core.log"
    core = start_core_process(config, env, log)
    want = expected_batches(RaceSimulatorAdapter(laps=LAPS, speed=0, seed=SEED))
    rng = random.Random(SEED)
    shim = driver_shim(
        broker,
        key,
        tmp_path / "shim.spool",
        RaceSimulatorAdapter(laps=LAPS, speed=0, seed=SEED),
    )
    stop = threading.Event()
    thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
    seen: list[tuple[int, int, int]] = []
    try:
        assert wait_for(lambda: "connected to" in log.read_text(), timeout=30)
        thread.start()
        for _cut in range(CUTS):
            connected = log.read_text().count("connected to")
            time.sleep(rng.uniform(1.0, 3.0))
            growing = wal_bytes(db)
            core.send_signal(signal.SIGKILL)  # the power goes, mid-transaction or not
            core.wait(timeout=10)
            with sqlite3.connect(db) as conn:  # opening it recovers from the WAL
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            chunks, distinct, laps = stored_counts(db)
            assert chunks == distinct  # nothing stored twice
            assert laps == list(range(len(laps)))  # laps in order, none twice
            seen.append((chunks, len(laps), growing))
            core = start_core_process(config, env, log)
            assert wait_for(
                lambda c=connected: log.read_text().count("connected to") > c, 30
            )
        thread.join(timeout=120)
        assert shim.final_spool_depth == 0
        assert wait_for(lambda: stored_counts(db)[0] >= want, timeout=60)
        time.sleep(0.5)
        chunks, distinct, laps = stored_counts(db)
        assert chunks == distinct == want  # every batch, once
        assert laps == list(range(LAPS + 1))
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        sys.stderr.write(
            "power cuts (chunks stored, laps, WAL bytes at the cut): "
            + "; ".join(f"{c}, {n}, {w}" for c, n, w in seen)
            + f"; final {chunks} of {want}\n"
        )
    finally:
        stop.set()
        thread.join(timeout=20)
        stop_process(core)
