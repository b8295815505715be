"""The shim takes only its own, authentic Acks from the core (real Mosquitto, no core)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import Ack, Command, Message
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from driver_pc.service import ShimConfig, ShimService
from driver_pc.transport.sender import AckMode
from tests.conftest import BrokerHandle, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def appliance_side(broker: BrokerHandle) -> Iterator[MqttConnection]:
    """A connection with the appliance's login, to publish on the ack topic."""
    connection = MqttConnection(
        "appliance-side",
        BrokerAddress(
            broker.host, broker.port, broker.appliance_user, broker.appliance_password
        ),
    )
    connection.start()
    assert connection.connected.wait(10)
    yield connection
    connection.stop()


def test_only_an_authentic_ack_of_this_shim_empties_its_spool(
    broker: BrokerHandle, appliance_side: MqttConnection, tmp_path: Path
) -> None:
    key = os.urandom(32)  # the shim's key (a paired device's, or the team key)
    source = broker.driver_user
    shim = ShimService(
        ShimConfig(
            source=source,
            broker=BrokerAddress(
                broker.host, broker.port, broker.driver_user, broker.driver_password
            ),
            team_key=key,
            spool_path=str(tmp_path / "shim.spool"),
            ack_mode=AckMode.CORE,
            ack_timeout_s=60,
        ),
        RaceSimulatorAdapter(laps=1, speed=0, seed=5),
    )
    stop = threading.Event()
    thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
    thread.start()
    try:
        # No core: the broker PUBACKs the race, the spool keeps all of it.
        assert wait_for(lambda: shim.sender.sent > 100 and shim.sender.in_flight == 0)
        entries = shim.spool.pending(0, 100_000)
        depth = len(entries)
        newest = entries[-1].seq
        half = entries[depth // 2].seq
        ack_topic = topics.shim_ack(source)
        appliance = Codec(key)

        def send(codec: Codec, message: Message) -> None:
            sealed = codec.encode("appliance", newest + 1, message, key_of=source)
            appliance_side.publish(ack_topic, sealed)

        send(Codec(os.urandom(32)), Ack(source, newest))  # not our key
        send(appliance, Ack("car2-pc1", newest))  # our key, another PC's Ack
        send(appliance, Command("c1", "camera", {"car": "1"}))  # not an Ack
        send(appliance, Ack(source, half))  # the real one: up to half
        # Had any of the others counted, nothing up to ``newest`` would be left.
        assert wait_for(lambda: oldest(shim) == entries[depth // 2 + 1].seq, 10)
    finally:
        stop.set()
        thread.join(timeout=15)


def oldest(shim: ShimService) -> int | None:
    """The sequence number of the oldest message still in the shim's spool."""
    first = shim.spool.pending(0, 1)
    return first[0].seq if first else None
