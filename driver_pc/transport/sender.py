"""Drains the spool to the broker in order, a bounded window at a time (backpressure)."""

from __future__ import annotations

import logging
import threading

from driver_pc.protocol.mqtt import MqttConnection
from driver_pc.protocol.topics import Topic
from driver_pc.transport.spool import Spool

logger = logging.getLogger(__name__)


class SpoolSender:
    """Publishes spooled messages with QoS 1 and deletes each only after its PUBACK.

    At most ``window`` messages are handed to paho at once, so a slow or absent broker
    makes the spool grow on disk instead of paho's memory queue overflowing. After a
    reconnect paho re-sends its unacknowledged messages itself; after a restart of the
    shim everything still in the spool is sent again (the appliance drops duplicates
    by sequence number).
    """

    def __init__(
        self, spool: Spool, connection: MqttConnection, window: int = 64
    ) -> None:
        self.spool = spool
        self.connection = connection
        self.window = window
        self.sent = 0
        self.acked = 0
        self._in_flight: dict[int, int] = {}
        self._early_acks: set[int] = set()
        self._last_id = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="spool-sender", daemon=True
        )
        connection.on_published = self._acked
        connection.on_connection_change = self._connection_changed

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)

    def notify(self) -> None:
        """Something new is in the spool."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def drained(self) -> bool:
        return self.in_flight == 0 and self.spool.depth() == 0

    def _connection_changed(self, connected: bool) -> None:
        self._wake.set()

    def _acked(self, mid: int) -> None:
        # Runs in paho's thread, possibly before ``_run`` has recorded the mid.
        with self._lock:
            spool_id = self._in_flight.pop(mid, None)
            if spool_id is None:
                self._early_acks.add(mid)
                return
        self._done(spool_id)

    def _done(self, spool_id: int) -> None:
        self.spool.delete([spool_id])
        self.acked += 1
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            if not self.connection.connected.is_set():
                continue
            room = self.window - self.in_flight
            if room <= 0:
                continue
            for spool_id, topic, payload in self.spool.pending(self._last_id, room):
                # Never hold our lock while calling paho: its thread holds its own
                # locks while it calls ``_acked``.
                mid = self.connection.publish(
                    Topic(topic, qos=1, retain=False), payload
                )
                if mid < 0:
                    break
                with self._lock:
                    early = mid in self._early_acks
                    if early:
                        self._early_acks.discard(mid)
                    else:
                        self._in_flight[mid] = spool_id
                if early:
                    self._done(spool_id)
                self._last_id = spool_id
                self.sent += 1
