"""The core's end-to-end Acks: one per source after each commit, sealed for that device."""

from __future__ import annotations

import os
import queue
from collections.abc import Iterator

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol import topics
from driver_pc.protocol.channels import ChannelKind, ChannelSpec
from driver_pc.protocol.codec import Codec
from driver_pc.protocol.messages import (
    Ack,
    ChannelDictionary,
    CommandResult,
    Message,
    ShimState,
    ShimStatus,
)
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from tests.conftest import RunningAppliance, wait_for

pytestmark = pytest.mark.timeout(60)

SOURCE = "car1-pc1"


class Shimside:
    """Plays a shim on the appliance's login: sends raw messages, reads the Acks."""

    def __init__(self, appliance: RunningAppliance) -> None:
        handle = appliance.broker
        self.codec = Codec(appliance.team_key)
        self.acks: queue.Queue[tuple[str, Ack]] = queue.Queue()
        self.connection = MqttConnection(
            "shimside",
            BrokerAddress(
                handle.host,
                handle.port,
                handle.appliance_user,
                handle.appliance_password,
            ),
        )
        self.connection.subscribe(topics.shim_ack(SOURCE).name, 1, self._on_ack)
        self.connection.start()
        assert self.connection.connected.wait(10)

    def _on_ack(self, topic: str, payload: bytes, _mid: int) -> None:
        envelope = self.codec.decode(payload)  # sealed with the device's key
        assert isinstance(envelope.message, Ack)
        self.acks.put((topic, envelope.message))

    def send(self, seq: int, message: Message, codec: Codec | None = None) -> bytes:
        payload = (codec or self.codec).encode(SOURCE, seq, message)
        self.resend(payload)
        return payload

    def resend(self, payload: bytes) -> None:
        self.connection.publish(topics.shim_data(SOURCE), payload)

    def next_ack(self) -> Ack:
        topic, ack = self.acks.get(timeout=10)
        assert topic == topics.shim_ack(SOURCE).name
        assert ack.source == SOURCE
        return ack


@pytest.fixture
def shimside(appliance: RunningAppliance) -> Iterator[Shimside]:
    side = Shimside(appliance)
    yield side
    side.connection.stop()


def status() -> ShimStatus:
    return ShimStatus(ShimState.STREAMING, "simulator", 1, 0)


def test_a_race_leaves_the_spool_on_the_cores_acks(
    appliance: RunningAppliance, shimside: Shimside
) -> None:
    shim = appliance.start_shim(RaceSimulatorAdapter(laps=1, speed=0, seed=3))
    _shim, thread, _stop = appliance.shims[-1]
    thread.join(timeout=30)
    assert shim.final_spool_depth == 0
    assert shim.sender.core_acks  # the appliance acknowledges end to end
    stored = appliance.core.writer.source_seqs()[SOURCE]
    # The core acknowledged, cumulatively, up to the last message it stored.
    while (ack := shimside.next_ack()).up_to_seq < stored:
        pass
    assert ack.up_to_seq == stored


def test_a_duplicate_is_acked_again(
    appliance: RunningAppliance, shimside: Shimside
) -> None:
    payload = shimside.send(1000, status())
    assert shimside.next_ack().up_to_seq == 1000
    shimside.resend(payload)  # already stored: dropped, and acknowledged again
    assert shimside.next_ack().up_to_seq == 1000
    assert appliance.core.ingestor.stats.duplicates == 1


def test_a_dead_letter_is_acked(
    appliance: RunningAppliance, shimside: Shimside
) -> None:
    shimside.send(1000, status())
    assert shimside.next_ack().up_to_seq == 1000
    # A result for a command nobody sent: kept aside; sending it again won't help.
    shimside.send(1001, CommandResult("nobody-sent-this", True))
    assert shimside.next_ack().up_to_seq == 1001
    assert sum(appliance.core.ingestor.stats.dead_letters.values()) == 1


def test_an_authentic_refusal_is_acked(
    appliance: RunningAppliance, shimside: Shimside
) -> None:
    """A refusal that is not kept (``foreign_session``) is handled all the same."""
    other = Codec(appliance.team_key)
    dictionary = ChannelDictionary(
        "car2-session", 60, (ChannelSpec("Speed", ChannelKind.FLOAT, unit="m/s"),)
    )
    shimside.connection.publish(
        topics.shim_data("car2-pc1"), other.encode("car2-pc1", 5, dictionary)
    )
    shimside.send(1000, status())
    assert shimside.next_ack().up_to_seq == 1000
    shimside.send(1001, dictionary)  # car1's PC writing into car2's session
    assert shimside.next_ack().up_to_seq == 1001
    rejected = appliance.core.ingestor.stats.rejected
    assert rejected == {"foreign_session": 1}
    assert appliance.core.writer.source_seqs()[SOURCE] == 1000  # nothing stored


def test_a_forged_message_vouches_for_nothing(
    appliance: RunningAppliance, shimside: Shimside
) -> None:
    shimside.send(1000, status())
    assert shimside.next_ack().up_to_seq == 1000
    shimside.send(10**12, status(), codec=Codec(os.urandom(32)))  # not its key
    # Acknowledged no further than what is stored.
    assert shimside.next_ack().up_to_seq == 1000
    assert wait_for(lambda: appliance.core.ingestor.stats.rejected == {"bad_auth": 1})
