"""Faults: the core's ingest thread dies or hangs; the process ends so supervisor restarts it.

The core runs as its own process (``python -m pitbox_appliance.core``), with a fault
put into its ingest path by a small wrapper: a bug outside any message's fault domain
(the thread dies) or a call that never returns (the loop hangs). Either way the process
must exit non-zero, saying why, and the message it was handling must be stored by the
restarted core: it was never acknowledged.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import TelemetryBatch
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.core.service import EXIT_INGEST_FAILED
from tests.conftest import (
    BrokerHandle,
    core_config_file,
    start_core_process,
    stop_process,
    wait_for,
)

# Run the core with a fault in its ingest path (the wrapper's argv[1] is the fault).
WRAPPER = """
import sys, time
from pitbox_appliance.core import __main__ as core_main
from pitbox_appliance.core.ingest import Ingestor
from pitbox_appliance.core.service import CoreService

fault = sys.argv.pop(1)
original = Ingestor.ingest

def ingest(self, payload, topic_source=None, topic=""):
    if len(payload) > 0 and self.stats.accepted >= 3:
        if fault == "die":
            # Nothing a message did: a bug in the loop's own code (not caught there).
            raise SystemError("the ingest loop's own bug")
        time.sleep(3600)  # "hang": a call that never returns
    return original(self, payload, topic_source, topic)

Ingestor.ingest = ingest
CoreService.__init__.__kwdefaults__["watchdog_s"] = 3.0
sys.exit(core_main.main(sys.argv[1:]))
"""


def core_with_fault(
    fault: str, config: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", WRAPPER, fault, "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def chunk_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(
                conn.execute("SELECT COUNT(*) FROM telemetry_chunks").fetchone()[0]
            )
    except sqlite3.OperationalError:
        return 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("die", "the ingest thread died"),
        ("hang", "ingest stuck for"),
    ],
)
def test_a_dead_or_hung_ingest_ends_the_process_and_loses_nothing(
    broker: BrokerHandle, tmp_path: Path, fault: str, says: str
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
    core = core_with_fault(fault, config, env, log)
    messages = list(
        ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0, seed=6)).messages()
    )[:40]
    batches = sum(isinstance(m, TelemetryBatch) for m in messages)
    codec = Codec(key)
    source = broker.driver_user
    shim = MqttConnection(
        "fault-shim",
        BrokerAddress(broker.host, broker.port, source, broker.driver_password),
    )
    try:
        assert wait_for(lambda: "connected to" in log.read_text(), timeout=30)
        shim.start()
        assert shim.connected.wait(10)
        for seq, message in enumerate(messages, 1):
            shim.publish(topics.shim_data(source), codec.encode(source, seq, message))
        started = time.monotonic()
        code = core.wait(timeout=60)
        took = time.monotonic() - started
        text = log.read_text()
        assert code == EXIT_INGEST_FAILED, text[-3000:]
        assert says in text
        assert "pitbox-core exits with status 70 so that supervisor restarts it" in text
        if fault == "hang":
            assert took >= 3.0  # the watchdog waited watchdog_s
            # The hung thread's stack is logged, down to the call that hangs.
            line = next(
                n for n, row in enumerate(WRAPPER.splitlines(), 1) if "3600" in row
            )
            assert f'File "<string>", line {line}, in ingest' in text
        # What it had not committed was never acknowledged: the restarted core
        # (here without the fault) gets it again from the broker and stores it.
        core = start_core_process(config, env, log)
        assert wait_for(lambda: chunk_count(db) == batches, timeout=30), (
            chunk_count(db),
            batches,
        )
    finally:
        shim.stop()
        stop_process(core)
