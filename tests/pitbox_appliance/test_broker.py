"""Tests for pitbox_appliance.broker against a real Mosquitto and paho clients."""

from __future__ import annotations

import configparser
import queue
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# These tests talk MQTT directly to check the broker itself, not our transport.
import paho.mqtt.client as mqtt  # noqa: TID251
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion  # noqa: TID251
from paho.mqtt.reasoncodes import ReasonCode  # noqa: TID251

from pitbox_appliance.broker import (
    MosquittoBroker,
    free_port,
    render_supervisor_config,
)
from tests.conftest import BrokerHandle, mosquitto_available

pytestmark = pytest.mark.timeout(10)

WAIT_S = 5.0
NOT_AUTHORIZED = 0x87


class TestClient:
    """A paho client driven by its own thread, with blocking helpers for tests."""

    __test__ = False  # not a test class, despite the name

    def __init__(
        self,
        handle: BrokerHandle,
        username: str | None,
        password: str | None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv5,
    ) -> None:
        self.handle = handle
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, protocol=protocol, reconnect_on_failure=False
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connect_result: ReasonCode | None = None
        self._connected = threading.Event()
        self._acks: dict[int, Any] = {}
        self._acked = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    def connect(self) -> ReasonCode:
        """Connect and return the broker's CONNACK reason code."""
        self.client.connect(self.handle.host, self.handle.port, keepalive=10)
        self.client.loop_start()
        assert self._connected.wait(WAIT_S), "no CONNACK from broker"
        assert self.connect_result is not None
        return self.connect_result

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe and wait for the SUBACK's reason codes."""
        _, mid = self.client.subscribe(topic, qos=qos)
        assert mid is not None
        result: list[ReasonCode] = self._wait_ack(mid)
        return result

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> ReasonCode:
        """Publish and wait for the PUBACK's reason code (QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        result: ReasonCode = self._wait_ack(info.mid)
        return result

    def next_message(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _wait_ack(self, mid: int) -> Any:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._acks, WAIT_S), (
                f"no ack for mid {mid}"
            )
            return self._acks.pop(mid)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self.connect_result = reason_code
        self._connected.set()

    def _on_message(
        self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        self.messages.put(message)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        with self._acked:
            self._acks[mid] = reason_codes
            self._acked.notify_all()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        with self._acked:
            self._acks[mid] = reason_code
            self._acked.notify_all()


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def client_factory(broker: BrokerHandle) -> Iterator[ClientFactory]:
    """Make clients of the test broker; every one is closed after the test."""
    made: list[TestClient] = []

    def make(
        username: str | None,
        password: str | None,
        protocol: MQTTProtocolVersion = mqtt.MQTTv5,
    ) -> TestClient:
        client = TestClient(broker, username, password, protocol)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def connected(factory: ClientFactory, username: str, password: str) -> TestClient:
    client = factory(username, password)
    code = client.connect()
    assert not code.is_failure, f"{username} refused: {code}"
    return client


def appliance(factory: ClientFactory, broker: BrokerHandle) -> TestClient:
    return connected(factory, broker.appliance_user, broker.appliance_password)


def driver(factory: ClientFactory, broker: BrokerHandle) -> TestClient:
    return connected(factory, broker.driver_user, broker.driver_password)


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_anonymous_connect_is_refused(
    client_factory: ClientFactory, protocol: MQTTProtocolVersion
) -> None:
    code = client_factory(None, None, protocol).connect()
    assert code.is_failure


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_wrong_password_is_refused(
    client_factory: ClientFactory, broker: BrokerHandle, protocol: MQTTProtocolVersion
) -> None:
    code = client_factory(broker.driver_user, "not-the-secret", protocol).connect()
    assert code.is_failure


def test_unknown_user_is_refused(client_factory: ClientFactory) -> None:
    code = client_factory("car9-pc9", "pc1-secret").connect()
    assert code.is_failure


def test_appliance_user_publishes_and_subscribes(
    client_factory: ClientFactory, broker: BrokerHandle
) -> None:
    app = appliance(client_factory, broker)
    assert not app.subscribe("pitbox/v1/#")[0].is_failure

    assert not app.publish("pitbox/v1/live/car1/state", b"state").is_failure

    message = app.next_message()
    assert (message.topic, message.payload) == ("pitbox/v1/live/car1/state", b"state")


def test_driver_writes_only_its_own_data_topic(
    client_factory: ClientFactory, broker: BrokerHandle
) -> None:
    app = appliance(client_factory, broker)
    app.subscribe("pitbox/v1/#")
    pc = driver(client_factory, broker)

    denied = [
        "pitbox/v1/shim/car2-pc1/data",  # another driver's source id
        "pitbox/v1/shim/car1-pc1/cmd",  # commands flow only to the shim
        "pitbox/v1/live/car1/state",  # live state is the appliance's
    ]
    for topic in denied:
        assert pc.publish(topic, b"forged").value == NOT_AUTHORIZED, topic
    assert not pc.publish("pitbox/v1/shim/car1-pc1/data", b"frames").is_failure

    # One publisher's messages arrive in order: once the allowed one is here,
    # any denied one that got through would already be queued before it.
    message = app.next_message()
    assert (message.topic, message.payload) == (
        "pitbox/v1/shim/car1-pc1/data",
        b"frames",
    )
    assert app.messages.empty()


def test_driver_reads_only_its_commands_and_live_topics(
    client_factory: ClientFactory, broker: BrokerHandle
) -> None:
    pc = driver(client_factory, broker)
    for topic in ("pitbox/v1/shim/+/cmd", "pitbox/v1/shim/+/data", "pitbox/v1/live/#"):
        pc.subscribe(topic)
    app = appliance(client_factory, broker)

    app.publish("pitbox/v1/shim/car2-pc1/cmd", b"not yours")
    app.publish("pitbox/v1/shim/car1-pc1/data", b"not readable")
    app.publish("pitbox/v1/shim/car1-pc1/cmd", b"camera")
    app.publish("pitbox/v1/live/car1/state", b"live")

    received = [(m.topic, m.payload) for m in (pc.next_message(), pc.next_message())]
    assert received == [
        ("pitbox/v1/shim/car1-pc1/cmd", b"camera"),
        ("pitbox/v1/live/car1/state", b"live"),
    ]
    assert pc.messages.empty()


def test_driver_reads_only_its_own_acks_and_cannot_forge_them(
    client_factory: ClientFactory, broker: BrokerHandle
) -> None:
    pc = driver(client_factory, broker)
    pc.subscribe("pitbox/v1/shim/+/ack")
    app = appliance(client_factory, broker)

    app.publish("pitbox/v1/shim/car2-pc1/ack", b"not yours")
    assert pc.publish("pitbox/v1/shim/car1-pc1/ack", b"forged").value == NOT_AUTHORIZED
    app.publish("pitbox/v1/shim/car1-pc1/ack", b"up to 42")

    message = pc.next_message()
    assert (message.topic, message.payload) == (
        "pitbox/v1/shim/car1-pc1/ack",
        b"up to 42",
    )
    assert pc.messages.empty()


def test_restart_keeps_serving_and_keeps_retained_state(
    client_factory: ClientFactory, broker: BrokerHandle
) -> None:
    app = appliance(client_factory, broker)
    app.publish("pitbox/v1/live/car1/state", b"retained", retain=True)
    app.close()
    old_pid = broker.broker.pid

    broker.broker.restart()

    assert broker.broker.running
    assert broker.broker.pid != old_pid
    app = appliance(client_factory, broker)
    app.subscribe("pitbox/v1/#")
    retained = app.next_message()
    assert (retained.topic, retained.payload, retained.retain) == (
        "pitbox/v1/live/car1/state",
        b"retained",
        True,
    )
    pc = driver(client_factory, broker)
    pc.publish("pitbox/v1/shim/car1-pc1/data", b"after restart")
    assert app.next_message().payload == b"after restart"


def test_user_added_while_running_can_connect(
    client_factory: ClientFactory, broker: BrokerHandle
) -> None:
    broker.broker.add_user("car2-pc1", "pc2-secret")

    # The SIGHUP reload is asynchronous: poll briefly for it to take effect.
    deadline = time.monotonic() + WAIT_S
    while client_factory("car2-pc1", "pc2-secret").connect().is_failure:
        assert time.monotonic() < deadline, "new user never accepted"
        time.sleep(0.02)


def test_password_file_is_private(broker: BrokerHandle) -> None:
    for path in (broker.broker.password_file, broker.broker.acl_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_stop_ends_the_process(broker: BrokerHandle) -> None:
    broker.broker.stop()

    assert not broker.broker.running
    with pytest.raises(OSError):  # noqa: PT011 - any refusal will do
        socket.create_connection((broker.host, broker.port), timeout=0.5).close()


def test_start_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        instance = MosquittoBroker(tmp_path, port=taken.getsockname()[1])
        instance.write_config("appliance")

        try:
            with pytest.raises(RuntimeError, match="already in use"):
                instance.start()
        finally:
            instance.stop()  # a no-op unless start() wrongly succeeded


def test_start_failure_includes_the_broker_log(tmp_path: Path) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    instance = MosquittoBroker(tmp_path, port=free_port())
    instance.write_config("appliance")
    instance.acl_file.unlink()

    try:
        with pytest.raises(
            RuntimeError, match=r"(?s)exited with code.*Unable to open acl_file"
        ):
            instance.start()
    finally:
        instance.stop()  # a no-op unless start() wrongly succeeded


def test_start_requires_config(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="write_config"):
        MosquittoBroker(tmp_path, port=free_port()).start()


def test_supervisor_config_names_the_three_programs(tmp_path: Path) -> None:
    path = render_supervisor_config(
        tmp_path,
        python="/opt/pitbox/.venv/bin/python",
        config=Path("/etc/pitbox/appliance.yaml"),
        team_key_hex="00ff" * 16,
        mqtt_password="s3cret%pass",
    )

    parser = configparser.RawConfigParser()
    assert parser.read(path) == [str(path)]
    programs = {s for s in parser.sections() if s.startswith("program:")}
    assert programs == {
        "program:mosquitto",
        "program:pitbox-core",
        "program:pitbox-dashboard",
    }
    assert parser["program:mosquitto"]["command"].endswith(
        f"-c {tmp_path}/mosquitto.conf"
    )
    assert parser["program:pitbox-core"]["command"] == (
        "/opt/pitbox/.venv/bin/python -m pitbox_appliance.core"
        " --config /etc/pitbox/appliance.yaml"
    )
    priorities = {p: int(parser[p]["priority"]) for p in programs}
    assert min(priorities, key=priorities.__getitem__) == "program:mosquitto"
    env = parser["program:pitbox-dashboard"]["environment"]
    assert 'PITBOX_MQTT_PASSWORD="s3cret%%pass"' in env  # % escaped for supervisor
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_supervisor_config_is_accepted_by_supervisor(tmp_path: Path) -> None:
    options = pytest.importorskip("supervisor.options")
    path = render_supervisor_config(
        tmp_path,
        "/usr/bin/python3",
        tmp_path / "appliance.yaml",
        "ab" * 32,
        "pass, with comma",
        api_tokens="0123456789abcdef0123:commands+driver",
    )

    server = options.ServerOptions()
    server.realize(args=["-c", str(path)])

    groups = {g.name: g for g in server.process_group_configs}
    assert set(groups) == {"mosquitto", "pitbox-core", "pitbox-dashboard"}
    core = groups["pitbox-core"].process_configs[0]
    assert core.environment == {
        "PITBOX_TEAM_KEY": "ab" * 32,
        "PITBOX_MQTT_PASSWORD": "pass, with comma",
        "PITBOX_API_TOKENS": "0123456789abcdef0123:commands+driver",
    }
    assert core.stopsignal == 15


@pytest.mark.parametrize(
    ("key", "password"), [("not-hex", "ok"), ("abcd", 'with"quote'), ("abcd", "")]
)
def test_supervisor_config_rejects_unsafe_values(
    tmp_path: Path, key: str, password: str
) -> None:
    with pytest.raises(ValueError, match="must be"):
        render_supervisor_config(
            tmp_path, "python3", tmp_path / "c.yaml", key, password
        )
