"""Faults: the appliance's disk fills up mid-race; nothing is acknowledged that is not stored."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
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

LAPS = 3
SEED = 41
FULL_FOR_S = 8.0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs mounted for the appliance's data directory (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CAP_SYS_ADMIN)")
    mount = tmp_path / "data"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file into ``directory`` until the file system has no space left."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError:
            pass
        try:
            while True:
                out.write(b"\0" * 512)
        except OSError:
            pass
    return filler


@pytest.mark.timeout(180)
def test_disk_full_holds_messages_unacknowledged_and_recovers(
    broker: BrokerHandle, tmp_path: Path, small_disk: Path
) -> None:
    key = os.urandom(32)
    db = small_disk / "core.sqlite3"
    # Commit often so that the full disk is hit by many commits, not one.
    config = core_config_file(tmp_path, broker, db, commit_interval_s=0.2)
    env = {
        **os.environ,
        "PITBOX_TEAM_KEY": key.hex(),
        "PITBOX_MQTT_PASSWORD": broker.appliance_password,
    }
    log = tmp_path / "core.log"
    core = start_core_process(config, env, log)
    want = expected_batches(RaceSimulatorAdapter(laps=LAPS, speed=0, seed=SEED))
    try:
        assert wait_for(lambda: "connected to" in log.read_text(), timeout=30)
        shim = driver_shim(
            broker,
            key,
            tmp_path / "shim.spool",
            RaceSimulatorAdapter(laps=LAPS, speed=5.0, seed=SEED),
        )
        stop = threading.Event()
        thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
        thread.start()
        assert wait_for(lambda: stored_counts(db)[0] >= 150, timeout=60)
        filler = fill(small_disk)
        assert wait_for(lambda: "storage failed" in log.read_text(), timeout=20), (
            log.read_text()[-3000:]
        )
        stuck = stored_counts(db)[0]
        time.sleep(FULL_FOR_S)  # the race goes on; the broker holds the messages
        assert core.poll() is None, "the core died on a full disk"
        assert stored_counts(db)[0] == stuck  # nothing committed while full
        text = log.read_text()
        assert "stay unacknowledged" in text
        filler.unlink()  # space returns
        thread.join(timeout=90)
        assert shim.final_spool_depth == 0  # everything the shim sent was acknowledged
        assert wait_for(lambda: stored_counts(db)[0] >= want, timeout=60), (
            stored_counts(db)[0],
            want,
        )
        time.sleep(0.5)
        chunks, distinct, laps = stored_counts(db)
        assert chunks == want == distinct  # every batch, none twice
        assert laps == list(range(LAPS + 1))  # every lap, once
        assert "storage recovered" in log.read_text()
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        stop_process(core)
