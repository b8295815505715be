"""The one place that talks to paho-mqtt: a connection with reconnect backoff and typed topics."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho  # noqa: TID251 - this module is the paho boundary
from paho.mqtt.enums import CallbackAPIVersion  # noqa: TID251

from driver_pc.protocol.topics import Topic

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, bytes, int], None]
KEEPALIVE_S = 10


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and who we are to it.

    With ``ca_file`` the connection uses TLS and accepts only a broker certificate
    signed by that CA for ``host`` (the appliance's own CA, received at pairing).
    ``fallback_hosts`` are tried in turn when ``host`` cannot be reached (a paired
    PC off the appliance's LAN reaches it by its public name); the connection
    stays on whichever host answered until that one fails.
    """

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    ca_file: str | None = None
    fallback_hosts: tuple[str, ...] = ()

    @property
    def hosts(self) -> tuple[str, ...]:
        """``host`` first, then each fallback (without repeats)."""
        return tuple(dict.fromkeys((self.host, *self.fallback_hosts)))


class MqttConnection:
    """A paho client in its own network thread.

    ``manual_ack`` defers the PUBACK of each received QoS-1 message until ``ack`` is
    called, so the appliance acknowledges only what it has committed. With
    ``clean_session=False`` the broker keeps what arrives while we are away.
    ``resend_on_reconnect=False`` is for a caller that keeps every message itself
    and sends again, in its own order, what a connection left unacknowledged (the
    shim's spool sender): paho's own re-send of those is then dropped at each
    reconnect, and such a caller publishes with ``session`` (see :meth:`publish`).
    """

    def __init__(
        self,
        client_id: str,
        address: BrokerAddress,
        *,
        clean_session: bool = True,
        manual_ack: bool = False,
        max_inflight: int = 100,
        resend_on_reconnect: bool = True,
    ) -> None:
        self.address = address
        self.client_id = client_id
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            manual_ack=manual_ack,
        )
        self._client.username_pw_set(address.username, address.password)
        if address.ca_file is not None:
            # Certificate and hostname are both checked (paho's defaults, kept).
            self._client.tls_set(ca_certs=address.ca_file)
        self._client.reconnect_delay_set(min_delay=1, max_delay=8)
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._subscriptions: dict[str, tuple[int, MessageHandler]] = {}
        self.connected = threading.Event()
        self.on_published: Callable[[int], None] | None = None
        self.on_connection_change: Callable[[bool], None] | None = None
        self.refused: str | None = None
        self._stopping = False
        self._resend_on_reconnect = resend_on_reconnect
        # Counts the connections made; a publish for an older one is refused.
        self.session = 0
        #: The host of the current or next connection attempt (see ``fallback_hosts``).
        self.host = address.host
        self._session_lock = threading.Lock()

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff after any drop."""
        self._client.connect_async(
            self.address.host, self.address.port, keepalive=KEEPALIVE_S
        )
        self._client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    def subscribe(self, pattern: str, qos: int, handler: MessageHandler) -> None:
        self._subscriptions[pattern] = (qos, handler)
        if self.connected.is_set():
            self._client.subscribe(pattern, qos)

    def publish(
        self, topic: Topic, payload: bytes | str, *, session: int | None = None
    ) -> int:
        """Queue a publish; returns its message id (-1 when not connected).

        With ``session`` (the :attr:`session` the caller last saw) the message is
        sent only on that very connection: -1 when not connected or reconnected
        since, so nothing of before a reconnect overtakes what the caller sends
        again after it.
        """
        if session is None:
            return self._publish(topic, payload)
        with self._session_lock:
            if session != self.session or not self.connected.is_set():
                return -1
            return self._publish(topic, payload)

    def _publish(self, topic: Topic, payload: bytes | str) -> int:
        info = self._client.publish(
            topic.name, payload, qos=topic.qos, retain=topic.retain
        )
        if info.rc != paho.MQTT_ERR_SUCCESS:
            return -1
        return int(info.mid)

    def ack(self, mid: int) -> None:
        self._client.ack(mid, 1)

    # ---- paho callbacks (network thread) -----------------------------------------------
    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
            logger.warning("broker refused connection: %s", reason)
            return
        self.refused = None
        sock = client.socket()
        if sock is not None:
            # Live data is latency-bound: no Nagle delay on small publishes.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for pattern, (qos, _handler) in self._subscriptions.items():
            client.subscribe(pattern, qos)
        with self._session_lock:
            if not self._resend_on_reconnect:
                # paho would re-send them right after this callback, ahead of
                # the older messages the caller sends again (a gap at the core).
                client.drop_out_messages()
            self.session += 1
            self.connected.set()
        logger.info("connected to %s:%s", self.host, self.address.port)
        if self.on_connection_change:
            self.on_connection_change(True)

    def _on_connect_fail(self, client: Any, _u: Any) -> None:
        """The host did not answer (TCP or TLS): try the next of ``address.hosts``."""
        hosts = self.address.hosts
        if len(hosts) < 2 or self._stopping:
            return
        following = hosts[(hosts.index(self.host) + 1) % len(hosts)]
        # paho's own way to change host (its socket is closed after a failure); its
        # network thread tries the new host after the reconnect delay.
        client.connect_async(following, self.address.port, keepalive=KEEPALIVE_S)
        logger.warning(
            "broker at %s:%s unreachable; trying %s next",
            self.host,
            self.address.port,
            following,
        )
        self.host = following

    def _on_disconnect(
        self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if self._stopping or not was_connected:
            # Our own stop, or a refused CONNECT (already logged by _on_connect).
            logger.info("disconnected from broker: %s", reason)
        else:
            # Mosquitto closes a connection when another one logs in with the same
            # client id; with use_username_as_clientid that takes the same login.
            logger.warning(
                "broker %s:%s dropped the connection of %s (client id %s): %s%s; "
                "reconnecting",
                self.host,
                self.address.port,
                self.address.username,
                self.client_id,
                reason,
                " (DISCONNECT from the broker)"
                if getattr(flags, "is_disconnect_packet_from_server", False)
                else "",
            )
        if self.on_connection_change:
            self.on_connection_change(False)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        for pattern, (_qos, handler) in self._subscriptions.items():
            if paho.topic_matches_sub(pattern, msg.topic):
                handler(msg.topic, bytes(msg.payload), int(msg.mid))
                return

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        if self.on_published:
            self.on_published(mid)
