"""Drains the spool to the broker in order, a bounded window at a time, until the core has it."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from enum import StrEnum

from driver_pc.protocol.mqtt import MqttConnection
from driver_pc.protocol.topics import Topic
from driver_pc.transport.spool import Spool

logger = logging.getLogger(__name__)


class AckMode(StrEnum):
    """Whose acknowledgement lets the shim delete a message from its spool."""

    #: The core's, once this spool has ever had one; the broker's PUBACK before that.
    AUTO = "auto"
    #: Only the core's end-to-end ``Ack``, sent after its commit.
    CORE = "core"
    #: The broker's PUBACK (what shims did before end-to-end acks).
    BROKER = "broker"


class SpoolSender:
    """Publishes spooled messages with QoS 1; deletes them once the core has them.

    A message stays in the spool until the appliance's core acknowledges it end to
    end (an ``Ack`` after its commit, passed to :meth:`acknowledged`), not when the
    broker PUBACKs it: a broker killed before its next snapshot loses what it had
    acknowledged. At most ``window`` messages wait for the broker's PUBACK (paho's
    memory queue never grows) and at most ``max_unacked`` for the core's Ack (the
    rest waits on disk).

    The core takes a source's messages only in rising sequence order and drops any
    number it has passed, so the order it sees them in must never skip one. After
    every reconnect the sender therefore starts again from the oldest message the
    core has not acknowledged (paho's own re-send of the old connection's messages
    is off: ``MqttConnection(resend_on_reconnect=False)``); the core drops what it
    already has. With no Ack for ``ack_timeout_s`` (doubling up to
    ``max_ack_timeout_s``) it does the same, but sends only ``window`` messages
    until an Ack comes: a core that is away gets a probe now and then, not the
    whole backlog each time.

    An appliance older than end-to-end acks never sends one: in ``AckMode.AUTO``
    the spool deletes on PUBACK until the first Ack it ever sees, and only on Acks
    from then on (remembered in the spool; docs/decisions.md).
    """

    def __init__(
        self,
        spool: Spool,
        connection: MqttConnection,
        window: int = 64,
        *,
        ack_mode: AckMode = AckMode.AUTO,
        max_unacked: int = 1000,
        ack_timeout_s: float = 5.0,
        max_ack_timeout_s: float = 60.0,
    ) -> None:
        self.spool = spool
        self.connection = connection
        self.window = window
        self.ack_mode = ack_mode
        self.max_unacked = max(window, max_unacked)
        self.ack_timeout_s = ack_timeout_s
        self.max_ack_timeout_s = max(ack_timeout_s, max_ack_timeout_s)
        self.sent = 0
        self.acked = 0
        #: How often the core's Ack was overdue and unacknowledged messages went again.
        self.timeouts = 0
        self._lock = threading.Lock()
        # Shared with paho's thread (under _lock):
        self._in_flight: dict[int, int] = {}  # mid -> seq, awaiting PUBACK
        self._early_acks: set[int] = set()
        self._ack_up_to = -1  # the highest sequence number the core acknowledged
        self.last_ack_at: float | None = None  # wall time of the core's latest Ack
        self._core_acks = ack_mode is AckMode.CORE or (
            ack_mode is AckMode.AUTO and spool.core_acks_seen
        )
        # The sender thread's own:
        self._session = 0  # the connection this round of sending is on
        self._last_seq = 0  # the last message sent in this round
        self._unacked: deque[int] = deque()  # seqs sent, awaiting the core's Ack
        self._applied = -1
        self._timer = 0.0  # since when the oldest of _unacked waits (or last progress)
        self._timeout = ack_timeout_s
        self._probing = False  # overdue and no Ack since: send `window` at most
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="spool-sender", daemon=True
        )
        connection.on_published = self._published
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

    def acknowledged(self, up_to_seq: int) -> None:
        """The core has every message up to ``up_to_seq`` (its verified ``Ack``).

        Called on paho's thread; the spool is emptied on the sender's.
        """
        with self._lock:
            self.last_ack_at = time.time()  # even a repeat: the appliance is alive
            if up_to_seq <= self._ack_up_to:
                return
            self._ack_up_to = up_to_seq
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """Messages handed to paho that the broker has not PUBACKed yet."""
        with self._lock:
            return len(self._in_flight)

    @property
    def core_acks(self) -> bool:
        """Whether messages now wait for the core's Ack (False: the broker's PUBACK)."""
        with self._lock:
            return self._core_acks

    def drained(self) -> bool:
        return self.in_flight == 0 and self.spool.depth() == 0

    # ---- paho's thread -------------------------------------------------------------
    def _connection_changed(self, connected: bool) -> None:
        self._wake.set()

    def _published(self, mid: int) -> None:
        # The broker's PUBACK; possibly before ``_run`` has recorded the mid.
        with self._lock:
            seq = self._in_flight.pop(mid, None)
            if seq is None:
                self._early_acks.add(mid)
                return
            by_broker = not self._core_acks
        if by_broker:
            self.spool.delete([seq])
            self.acked += 1
        self._wake.set()

    # ---- the sender's thread -------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.2)
            self._wake.clear()
            now = time.monotonic()
            self._apply_ack(now)
            if not self.connection.connected.is_set():
                continue
            session = self.connection.session
            if session != self._session:
                self._again(now, session)
            elif self._unacked and now - self._timer >= self._timeout:
                self._overdue(now)
            self._send(now)

    def _apply_ack(self, now: float) -> None:
        with self._lock:
            up_to = self._ack_up_to
            if up_to <= self._applied:
                return
            switch = not self._core_acks and self.ack_mode is AckMode.AUTO
            if switch:
                self._core_acks = True
        self._applied = up_to
        if switch:
            self.spool.note_core_acks()
            logger.info(
                "the appliance's core acknowledges end to end: messages now stay in"
                " the spool until it has stored them"
            )
            # Track what paho already has, too: send it again from the oldest.
            self._last_seq = 0
            self._unacked.clear()
        self.acked += self.spool.delete_up_to(up_to)
        while self._unacked and self._unacked[0] <= up_to:
            self._unacked.popleft()
        # The core is there: the timer starts afresh at full speed.
        self._timer = now
        self._timeout = self.ack_timeout_s
        self._probing = False

    def _again(self, now: float, session: int) -> None:
        """A new connection: start again from the oldest message still spooled."""
        with self._lock:
            # paho dropped what the old connection had not finished.
            self._in_flight.clear()
            self._early_acks.clear()
        self._session = session
        self._last_seq = 0
        self._unacked.clear()
        self._timer = now

    def _overdue(self, now: float) -> None:
        """No Ack for too long: send the oldest unacknowledged messages again."""
        waited = now - self._timer
        self.timeouts += 1
        logger.warning(
            "no acknowledgement from the appliance's core for %.0f s (%d messages"
            " in the spool); sending the oldest again, next try in %.0f s",
            waited,
            self.spool.depth(),
            min(self._timeout * 2, self.max_ack_timeout_s),
        )
        self._last_seq = 0
        self._unacked.clear()
        self._timer = now
        self._timeout = min(self._timeout * 2, self.max_ack_timeout_s)
        self._probing = True

    def _send(self, now: float) -> None:
        room = self.window - self.in_flight
        core_acks = self.core_acks
        if core_acks:
            limit = self.window if self._probing else self.max_unacked
            room = min(room, limit - len(self._unacked))
        if room <= 0:
            return
        for entry in self.spool.pending(self._last_seq, room):
            # Never hold our lock while calling paho: its thread holds its own
            # locks while it calls ``_published``.
            mid = self.connection.publish(
                Topic(entry.topic, qos=1, retain=False),
                entry.payload,
                session=self._session,
            )
            if mid < 0:
                break
            with self._lock:
                early = mid in self._early_acks
                if early:
                    self._early_acks.discard(mid)
                else:
                    self._in_flight[mid] = entry.seq
                by_broker = early and not self._core_acks
            if by_broker:
                self.spool.delete([entry.seq])
                self.acked += 1
            if core_acks:
                if not self._unacked:
                    self._timer = now
                self._unacked.append(entry.seq)
            self._last_seq = entry.seq
            self.sent += 1
