"""Faults: the shim's network is cut mid-race (own network namespace); its spool bridges it."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.broker import MosquittoBroker, free_port
from tests.conftest import (
    APPLIANCE_PASSWORD,
    APPLIANCE_USER,
    DRIVER_PASSWORD,
    DRIVER_USER,
    BrokerHandle,
    core_config_file,
    expected_batches,
    mosquitto_available,
    start_core_process,
    stop_process,
    stored_counts,
    wait_for,
)

SPEED = 4.0
SEED = 51
CUT_S = float(os.environ.get("PITBOX_NETCUT_S", "20"))
# The race must outlast the cut (a simulated lap is ~26 s): 4 laps for the CI's 20 s.
LAPS = max(4, int((CUT_S + 5) * SPEED / 26) + 1)


@dataclass(frozen=True)
class Netns:
    """A network namespace joined to the host by a veth pair."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    def ip(self, *args: str, inside: bool = False) -> None:
        cmd = (
            ["ip", "netns", "exec", self.name, "ip", *args] if inside else ["ip", *args]
        )
        subprocess.run(cmd, check=True, capture_output=True, text=True)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@pytest.fixture
def netns() -> Iterator[Netns]:
    """A namespace with its own address 10.213.N.2 and the host at 10.213.N.1."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN) and iproute2")
    tag = secrets.token_hex(3)
    net = int(tag[:2], 16)
    ns = Netns(
        f"pbx{tag}", f"pbh{tag}", f"pbn{tag}", f"10.213.{net}.1", f"10.213.{net}.2"
    )
    made = _ip("netns", "add", ns.name)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        veth = _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
        if veth.returncode != 0:
            pytest.skip(f"cannot create a veth pair: {veth.stderr.strip()}")
        ns.ip("link", "set", ns.ns_if, "netns", ns.name)
        ns.ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
        ns.ip("link", "set", ns.host_if, "up")
        ns.ip("addr", "add", f"{ns.ns_ip}/30", "dev", ns.ns_if, inside=True)
        ns.ip("link", "set", ns.ns_if, "up", inside=True)
        ns.ip("link", "set", "lo", "up", inside=True)
        yield ns
    finally:
        _ip("link", "del", ns.host_if)
        _ip("netns", "del", ns.name)


@pytest.fixture
def lan_broker(tmp_path: Path, netns: Netns) -> Iterator[BrokerHandle]:
    """A broker listening on the host's end of the veth pair."""
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    port = free_port()
    instance = MosquittoBroker(tmp_path / "mosquitto", port=port, bind=netns.host_ip)
    instance.add_user(APPLIANCE_USER, APPLIANCE_PASSWORD)
    instance.add_user(DRIVER_USER, DRIVER_PASSWORD)
    instance.write_config(appliance_user=APPLIANCE_USER)
    instance.start()
    try:
        yield BrokerHandle(broker=instance, host=netns.host_ip, port=port)
    finally:
        instance.stop()


def spool_depth(spool: Path) -> int:
    if not spool.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:
        return 0


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
        netns.ip("link", "set", netns.ns_if, "down", inside=True)
        cut_at = time.monotonic()
        time.sleep(3)  # what was in flight lands; then nothing gets through
        before = stored_counts(db)[0]
        time.sleep(max(0.0, CUT_S - (time.monotonic() - cut_at)))
        assert stored_counts(db)[0] == before  # really cut off
        held = spool_depth(spool)
        assert held > 100, held  # the race went on into the spool
        netns.ip("link", "set", netns.ns_if, "up", inside=True)
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
