"""Faults: the shim's network is cut mid-race (own network namespace); its spool bridges it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from tests.conftest import (
    BrokerHandle,
    core_config_file,
    expected_batches,
    start_core_process,
    stop_process,
    stored_counts,
    wait_for,
)
from tests.system.netns import Netns, lan_broker, network_namespace, spool_depth

SPEED = 4.0
SEED = 51
CUT_S = float(os.environ.get("PITBOX_NETCUT_S", "20"))
# The race must outlast the cut (a simulated lap is ~26 s): 4 laps for the CI's 20 s.
LAPS = max(4, int((CUT_S + 5) * SPEED / 26) + 1)


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A namespace with its own address 10.213.N.2 and the host at 10.213.N.1."""
    with network_namespace() as ns:
        yield ns


@pytest.fixture(name="lan_broker")
def lan_broker_fixture(tmp_path: Path, netns: Netns) -> Iterator[BrokerHandle]:
    """A broker listening on the host's end of the veth pair."""
    with lan_broker(tmp_path, netns) as handle:
        yield handle


@pytest.mark.timeout(200)
def test_shim_network_cut_mid_race_loses_nothing(
    lan_broker: BrokerHandle, netns: Netns, tmp_path: Path
) -> None:
    broker = lan_broker
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
    spool = tmp_path / "shim.spool"
    shim_log = tmp_path / "shim.log"
    shim: subprocess.Popen[bytes] | None = None
    try:
        assert wait_for(lambda: "connected to" in log.read_text(), timeout=30)
        with shim_log.open("wb") as out:
            shim = subprocess.Popen(
                [
                    *("ip", "netns", "exec", netns.name),
                    *(sys.executable, "-m", "driver_pc", "--adapter", "simulator"),
                    *("--laps", str(LAPS), "--speed", str(SPEED), "--seed", str(SEED)),
                    *("--source", broker.driver_user, "--host", broker.host),
                    *("--port", str(broker.port), "--spool", str(spool)),
                ],
                env={**env, "PITBOX_MQTT_PASSWORD": broker.driver_password},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        assert wait_for(lambda: stored_counts(db)[0] >= 60, timeout=30)
        netns.cut()
        cut_at = time.monotonic()
        time.sleep(3)  # what was in flight lands; then nothing gets through
        before = stored_counts(db)[0]
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
        assert stored_counts(db)[0] == before  # really cut off
        held = spool_depth(spool)
        assert held > 100, held  # the race went on into the spool
        netns.restore()
        restored_at = time.monotonic()
        assert wait_for(lambda: stored_counts(db)[0] > before, timeout=60)
        caught_up_s = time.monotonic() - restored_at
        assert shim.wait(timeout=120) == 0, shim_log.read_text()[-2000:]
        assert spool_depth(spool) == 0
        assert wait_for(lambda: stored_counts(db)[0] >= want, timeout=30)
        time.sleep(0.5)
        chunks, distinct, laps = stored_counts(db)
        assert chunks == distinct == want  # every batch, none twice
        assert laps == list(range(LAPS + 1))
        sys.stderr.write(
            f"network cut {CUT_S:.0f} s: {held} messages spooled, first stored again"
            f" {caught_up_s:.1f} s after the link came back\n"
        )
    finally:
        if shim is not None:
            stop_process(shim)
        stop_process(core)
