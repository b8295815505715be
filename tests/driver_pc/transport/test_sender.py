"""The spool sender against a real Mosquitto: a message leaves the spool on the core's Ack."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from driver_pc.protocol import topics
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from driver_pc.transport.sender import AckMode, SpoolSender
from driver_pc.transport.spool import Spool
from tests.conftest import BrokerHandle, wait_for

pytestmark = pytest.mark.timeout(60)

SOURCE = "car1-pc1"  # the broker fixture's driver login
DATA = topics.shim_data(SOURCE).name


@dataclass
class Received:
    """What the appliance side of the broker got on the shim's data topic."""

    payloads: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, _topic: str, payload: bytes, _mid: int) -> None:
        with self.lock:
            self.payloads.append(payload)

    def __len__(self) -> int:
        with self.lock:
            return len(self.payloads)

    def since(self, start: int) -> list[bytes]:
        with self.lock:
            return self.payloads[start:]


@dataclass
class Rig:
    """A spool, the shim's connection and a listener in the core's place."""

    broker: BrokerHandle
    tmp: Path
    received: Received
    made: list[tuple[SpoolSender, MqttConnection]] = field(default_factory=list)

    def spool(self, name: str = "shim.spool") -> Spool:
        return Spool(self.tmp / name)

    def close(self, sender: SpoolSender) -> None:
        """Stop a sender and its connection (the next one logs in as the same PC)."""
        sender.stop()
        sender.connection.stop()

    def sender(self, spool: Spool, **options: object) -> SpoolSender:
        """A started sender on the driver's login, as ShimService makes it."""
        connection = MqttConnection(
            f"shim-{SOURCE}",
            BrokerAddress(
                self.broker.host,
                self.broker.port,
                self.broker.driver_user,
                self.broker.driver_password,
            ),
            max_inflight=int(str(options.get("window", 64))),
            resend_on_reconnect=False,
        )
        sender = SpoolSender(spool, connection, **options)  # type: ignore[arg-type]
        connection.start()
        sender.start()
        self.made.append((sender, connection))
        assert connection.connected.wait(10)
        return sender


@pytest.fixture
def rig(broker: BrokerHandle, tmp_path: Path) -> Iterator[Rig]:
    received = Received()
    listener = MqttConnection(
        "listener",
        BrokerAddress(
            broker.host, broker.port, broker.appliance_user, broker.appliance_password
        ),
        clean_session=False,  # keeps what comes while a broker restart parts us
    )
    listener.subscribe(DATA, 1, received.add)
    listener.start()
    assert listener.connected.wait(10)
    made = Rig(broker, tmp_path, received)
    yield made
    for sender, connection in made.made:
        sender.stop()
        connection.stop()
    listener.stop()


def spooled(spool: Spool, count: int) -> list[int]:
    """Append ``count`` messages ``m0``, ``m1``, …; their sequence numbers."""
    seqs = []
    for i in range(count):
        seq = spool.next_seq()
        spool.append(DATA, f"m{i}".encode(), seq)
        seqs.append(seq)
    return seqs


def payloads(spool: Spool) -> list[bytes]:
    return [entry.payload for entry in spool.pending(0, 10_000)]


def test_a_message_stays_spooled_until_the_core_acks_it(rig: Rig) -> None:
    spool = rig.spool()
    seqs = spooled(spool, 5)
    sender = rig.sender(spool, ack_mode=AckMode.CORE)
    assert wait_for(lambda: len(rig.received) == 5 and sender.in_flight == 0, 10)
    assert spool.depth() == 5  # the broker's PUBACK deletes nothing

    sender.acknowledged(seqs[2])
    assert wait_for(lambda: spool.depth() == 2, 5)
    assert payloads(spool) == [b"m3", b"m4"]
    sender.acknowledged(seqs[1])  # an older Ack changes nothing
    sender.acknowledged(seqs[4])
    assert wait_for(lambda: spool.depth() == 0, 5)
    assert sender.drained()
    assert rig.received.payloads == [b"m0", b"m1", b"m2", b"m3", b"m4"]


def test_without_an_ack_it_is_sent_again_with_back_off(rig: Rig) -> None:
    spool = rig.spool()
    seqs = spooled(spool, 3)
    sender = rig.sender(spool, ack_mode=AckMode.CORE, ack_timeout_s=0.5)
    assert wait_for(lambda: len(rig.received) >= 6, 5)  # once, and again
    assert rig.received.since(3)[:3] == [b"m0", b"m1", b"m2"]  # oldest first
    assert wait_for(lambda: sender.timeouts >= 2, 5)
    sender.acknowledged(seqs[-1])
    assert wait_for(lambda: spool.depth() == 0, 5)
    settled = len(rig.received)
    assert not wait_for(lambda: len(rig.received) > settled, 1.5)  # acked: quiet


def test_an_overdue_core_gets_a_window_not_the_backlog(rig: Rig) -> None:
    spool = rig.spool()
    seqs = spooled(spool, 20)
    sender = rig.sender(spool, ack_mode=AckMode.CORE, window=4, ack_timeout_s=0.5)
    assert wait_for(lambda: len(rig.received) >= 24, 5)
    assert not wait_for(lambda: len(rig.received) > 24, 0.3)  # the probe: 4 only
    assert rig.received.since(20) == [b"m0", b"m1", b"m2", b"m3"]

    sender.acknowledged(seqs[9])  # the core is back: the rest goes at full speed
    assert wait_for(lambda: len(rig.received) >= 34, 5)
    assert rig.received.since(24) == [f"m{i}".encode() for i in range(10, 20)]
    sender.acknowledged(seqs[-1])
    assert wait_for(lambda: spool.depth() == 0, 5)


def test_after_a_reconnect_it_starts_again_from_the_oldest_unacked(
    rig: Rig, broker: BrokerHandle
) -> None:
    spool = rig.spool()
    seqs = spooled(spool, 6)
    sender = rig.sender(spool, ack_mode=AckMode.CORE, ack_timeout_s=60)
    assert wait_for(lambda: len(rig.received) == 6 and sender.in_flight == 0, 5)
    sender.acknowledged(seqs[1])
    assert wait_for(lambda: spool.depth() == 4, 5)

    broker.broker.restart()  # every client is disconnected and reconnects
    assert wait_for(lambda: len(rig.received) >= 10, 20)
    assert rig.received.since(6) == [b"m2", b"m3", b"m4", b"m5"]  # in order
    sender.acknowledged(seqs[-1])
    assert wait_for(lambda: spool.depth() == 0, 5)


def test_broker_mode_deletes_on_puback(rig: Rig) -> None:
    """For an appliance older than end-to-end acks."""
    spool = rig.spool()
    spooled(spool, 5)
    sender = rig.sender(spool, ack_mode=AckMode.BROKER)
    assert wait_for(lambda: spool.depth() == 0, 10)
    assert sender.drained()
    assert len(rig.received) == 5


def test_auto_mode_waits_for_the_core_once_it_has_acked(rig: Rig) -> None:
    spool = rig.spool()
    first = spooled(spool, 3)
    sender = rig.sender(spool, ack_mode=AckMode.AUTO, ack_timeout_s=60)
    assert wait_for(lambda: spool.depth() == 0, 10)  # never acked: like before
    assert not sender.core_acks

    sender.acknowledged(first[-1])  # the appliance acknowledges end to end
    assert wait_for(lambda: sender.core_acks, 5)
    assert spool.core_acks_seen
    later = spooled(spool, 2)
    sender.notify()
    assert wait_for(lambda: len(rig.received) >= 5 and sender.in_flight == 0, 10)
    assert spool.depth() == 2  # kept until the core's Ack
    sender.acknowledged(later[-1])
    assert wait_for(lambda: spool.depth() == 0, 5)
    rig.close(sender)

    spooled(spool, 1)  # the next run of the shim remembers it
    again = rig.sender(spool, ack_mode=AckMode.AUTO)
    assert again.core_acks
    assert wait_for(lambda: len(rig.received) >= 6 and again.in_flight == 0, 10)
    assert spool.depth() == 1


def test_a_publish_for_an_old_connection_is_refused(broker: BrokerHandle) -> None:
    """Nothing of before a reconnect overtakes what is sent again after it."""
    connection = MqttConnection(
        "shim-old",
        BrokerAddress(
            broker.host, broker.port, broker.driver_user, broker.driver_password
        ),
        resend_on_reconnect=False,
    )
    connection.start()
    try:
        assert connection.connected.wait(10)
        first = connection.session
        assert connection.publish(topics.shim_data(SOURCE), b"x", session=first) > 0
        broker.broker.restart()
        assert wait_for(lambda: connection.session > first, 20)
        assert connection.publish(topics.shim_data(SOURCE), b"y", session=first) < 0
    finally:
        connection.stop()
