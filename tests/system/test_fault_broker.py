"""Faults: Mosquitto kill -9, repeated, mid-race; the shim's spool holds what the broker loses.

A broker acknowledges a shim's message as soon as it is in memory, and writes a
snapshot only every 3 s. A message it acknowledged and had not yet handed to the
core is gone after a ``kill -9``: here the core stalls for 2.5 s before each kill
(``SIGSTOP``, as a Pi's core does in an SD-card write stall or when it is behind), so
the broker holds such messages every time. The shim keeps each one until the core's
end-to-end Ack and sends it again after the broker is back.

``PITBOX_ACK_MODE=broker`` runs the shim as before end-to-end acks (it deletes on the
broker's PUBACK): the test then fails and prints how many batches were lost.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol.mqtt import BrokerAddress
from driver_pc.service import ShimConfig, ShimService
from driver_pc.transport.sender import AckMode
from tests.conftest import (
    BrokerHandle,
    core_config_file,
    expected_batches,
    start_core_process,
    stop_process,
    stored_counts,
    wait_for,
)

LAPS = 6
SPEED = 4.0  # a lap is ~6.5 s: the race streams for ~45 s, the kills take ~25 s
SEED = 61
KILLS = 4
EVERY_S = 6.0
STALL_S = 2.5  # < EVERY_S - the 3 s snapshot interval would leave nothing unsaved
ACK_MODE = AckMode(os.environ.get("PITBOX_ACK_MODE", AckMode.AUTO))


@pytest.mark.timeout(150)
def test_broker_killed_4_times_mid_race_loses_nothing(
    broker: BrokerHandle, tmp_path: Path
) -> None:
    key = os.urandom(32)
    db = tmp_path / "core.sqlite3"
    env = {
        **os.environ,
        "PITBOX_TEAM_KEY": key.hex(),
        "PITBOX_MQTT_PASSWORD": broker.appliance_password,
    }
    log = tmp_path / "core.log"
    core = start_core_process(core_config_file(tmp_path, broker, db), env, log)
    want = expected_batches(RaceSimulatorAdapter(laps=LAPS, speed=0, seed=SEED))
    shim = ShimService(
        ShimConfig(
            source=broker.driver_user,
            broker=BrokerAddress(
                broker.host, broker.port, broker.driver_user, broker.driver_password
            ),
            team_key=key,
            spool_path=str(tmp_path / "shim.spool"),
            ack_mode=ACK_MODE,
        ),
        RaceSimulatorAdapter(laps=LAPS, speed=SPEED, seed=SEED),
    )
    stop = threading.Event()
    thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
    try:
        assert wait_for(lambda: "connected to" in log.read_text(), timeout=30)
        thread.start()
        assert wait_for(lambda: stored_counts(db)[0] >= 20, timeout=30)
        started = time.monotonic()
        for kill in range(1, KILLS + 1):
            time.sleep(max(0.0, started + kill * EVERY_S - STALL_S - time.monotonic()))
            core.send_signal(signal.SIGSTOP)
            time.sleep(STALL_S)  # the broker acknowledges; the core takes nothing
            pid = broker.broker.pid
            assert pid is not None, "the broker is not running"
            os.kill(pid, signal.SIGKILL)  # no chance to save its memory
            assert wait_for(lambda: not broker.broker.running, 5)
            broker.broker.stop()  # reaps the process; nothing is signalled
            broker.broker.start()  # from its last snapshot
            core.send_signal(signal.SIGCONT)
        assert "terminating" not in broker.broker.log_file.read_text()
        thread.join(timeout=90)
        assert not thread.is_alive(), "the shim did not finish its race"
        wait_for(lambda: stored_counts(db)[1] >= want, timeout=30)
        time.sleep(0.5)  # a duplicate, were one stored, would land by now
        chunks, distinct, laps = stored_counts(db)
        sys.stderr.write(
            f"broker kill -9 x{KILLS}, {EVERY_S:.0f} s apart, core stalled"
            f" {STALL_S} s before each, shim acks {ACK_MODE}: {distinct} of {want}"
            f" batches stored ({want - distinct} lost), {chunks - distinct} twice;"
            f" shim sent {shim.sender.sent} messages, its spool kept"
            f" {shim.final_spool_depth}\n"
        )
        assert chunks == distinct == want  # every batch the shim made, once
        assert laps == list(range(LAPS + 1))
        assert shim.final_spool_depth == 0
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        stop.set()
        thread.join(timeout=15)
        core.send_signal(signal.SIGCONT)
        stop_process(core)
