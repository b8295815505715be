"""The cloud bridge with two real Mosquitto brokers: a shim on the cloud broker, the core behind the bridge.

The cloud broker is rendered by ``pitbox_appliance.security.remote`` (TLS with a
certificate from the appliance CA, the device's own login copied, the bridge's
login); the appliance broker bridges to it (``bridge.json`` → mosquitto.conf).
The shim's LAN address does not answer, so it falls back to the public (cloud)
one, as a paired PC off the LAN does.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol.mqtt import BrokerAddress
from driver_pc.service import ShimConfig, ShimService
from pitbox_appliance.broker import BridgeConfig, MosquittoBroker, free_port
from pitbox_appliance.config import ApplianceConfig, CoreConfig, MqttConfig
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.pki import ensure_pki
from pitbox_appliance.security.remote import BRIDGE_USER, write_cloud_broker
from tests.conftest import (
    APPLIANCE_PASSWORD,
    APPLIANCE_USER,
    DRIVER_PASSWORD,
    DRIVER_USER,
    expected_batches,
    mosquitto_available,
    wait_for,
)

LAPS = 3
SPEED = 6.0
SEED = 23


def _chunks(db: Path) -> tuple[int, int]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        total, distinct = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT source || ':' || seq)"
            " FROM telemetry_chunks"
        ).fetchone()
    return int(total), int(distinct)


@pytest.mark.timeout(180)
def test_shim_on_the_cloud_broker_reaches_the_core_through_the_bridge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    pki = ensure_pki(tmp_path / "security", ["127.0.0.1", "localhost"])
    # The appliance broker, with the device's login (as pairing makes it).
    appliance = MosquittoBroker(tmp_path / "appliance", port=free_port())
    appliance.add_user(APPLIANCE_USER, APPLIANCE_PASSWORD)
    appliance.add_user(DRIVER_USER, DRIVER_PASSWORD)
    # The cloud broker: TLS + passwords, rendered from the appliance's files.
    cloud_port = free_port()
    bridge_password = "bridge-" + os.urandom(8).hex()
    write_cloud_broker(
        tmp_path / "cloud",
        pki,
        "127.0.0.1",
        cloud_port,
        appliance.password_file,
        bridge_password,
        bind="127.0.0.1",
        user="root" if os.geteuid() == 0 else None,
    )
    cloud = MosquittoBroker(tmp_path / "cloud", port=cloud_port)
    (tmp_path / "appliance" / "bridge.json").write_text(
        json.dumps(
            BridgeConfig(
                "127.0.0.1", cloud_port, BRIDGE_USER, bridge_password, str(pki.ca_cert)
            ).to_json()
        )
    )
    conf = appliance.write_config(APPLIANCE_USER).read_text()
    assert "topic pitbox/v1/shim/+/data in 1" in conf
    assert "topic pitbox/v1/shim/+/cmd out 1" in conf
    assert "bridge_insecure false" in conf
    cloud.start()
    appliance.start()
    key = os.urandom(32)
    monkeypatch.setenv("PITBOX_MQTT_PASSWORD", APPLIANCE_PASSWORD)
    db = tmp_path / "core.sqlite3"
    core = CoreService(
        ApplianceConfig(
            mqtt=MqttConfig(
                host="127.0.0.1", port=appliance.port, username=APPLIANCE_USER
            ),
            core=CoreConfig(db_url=f"sqlite:///{db}"),
        ),
        key,
    )
    sim = RaceSimulatorAdapter(laps=LAPS, speed=SPEED, seed=SEED)
    want = expected_batches(RaceSimulatorAdapter(laps=LAPS, speed=0, seed=SEED))
    shim = ShimService(
        ShimConfig(
            source=DRIVER_USER,
            # "LAN" 127.0.0.2 has no broker (refused); the public name is the cloud.
            broker=BrokerAddress(
                "127.0.0.2",
                cloud_port,
                DRIVER_USER,
                DRIVER_PASSWORD,
                ca_file=str(pki.ca_cert),
                fallback_hosts=("127.0.0.1",),
            ),
            team_key=key,
            spool_path=str(tmp_path / "shim.spool"),
        ),
        sim,
    )
    stop = threading.Event()
    thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
    try:
        core.start()
        assert core.connection.connected.wait(10)
        # The bridge holds a persistent session on the cloud broker before the shim
        # publishes (else the cloud has nobody to keep its first messages for).
        assert wait_for(
            lambda: "Connecting bridge" in appliance.log_file.read_text(), 15
        )
        thread.start()
        assert wait_for(lambda: shim.connection.connected.is_set(), 30)
        assert shim.connection.host == "127.0.0.1"  # fell back to the public one
        # A command goes out through the bridge; the result comes back in.
        assert wait_for(lambda: core.ingestor.source_of("car1") is not None, 30)
        command = core.send_command("car1", "message", {"text": "Box via cloud"})
        assert wait_for(
            lambda: bool((core.command_status(command.command_id) or {}).get("result")),
            30,
        )
        assert shim.messages_shown == ["Box via cloud"]
        thread.join(timeout=120)
        assert not thread.is_alive(), "the shim did not finish"
        assert wait_for(lambda: _chunks(db)[0] >= want, 30)
        total, distinct = _chunks(db)
        # Exactly once: every batch, none twice, although the core's acks travel
        # back through the bridge before the spool lets go of anything.
        assert (total, distinct) == (want, want)
        assert shim.sender.core_acks, "no end-to-end Ack came back through the bridge"
        assert shim.final_spool_depth == 0
    finally:
        stop.set()
        thread.join(timeout=15)
        core.stop()
        appliance.stop()
        cloud.stop()
