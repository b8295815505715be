"""Client ids tied to logins, and broker persistence against kill -9 (issue 11 §4).

Real parts throughout: Mosquitto with the appliance's rendered config (plain listener
for the appliance, TLS listener for driver PCs), the core service with its persistent
session, a shim streaming a simulated race, and a hostile paired device.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.protocol import topics
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from driver_pc.service import ShimConfig, ShimService
from pitbox_appliance.broker import (
    PROGRAM_USERS,
    READ_ONLY_USERS,
    MosquittoBroker,
    TlsListener,
    free_port,
    password_users,
)
from pitbox_appliance.config import (
    CORE_MQTT_USER,
    DASHBOARD_MQTT_USER,
    ApplianceConfig,
    CoreConfig,
    MqttConfig,
)
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.devices import check_source
from pitbox_appliance.security.pki import ensure_pki
from tests.conftest import (
    expected_batches,
    mosquitto_available,
    stored_counts,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

APPLIANCE_USER = "appliance"
APPLIANCE_PASSWORD = "appliance-pw-7c3e1f"
SHIM_USER = "car1-pc1"
SHIM_PASSWORD = "car1-pw-2b8d4a"
HOSTILE_USER = "car9-pc1"
HOSTILE_PASSWORD = "car9-pw-9e6f0c"
WARNING_MARK = "dropped the connection of"


@dataclass
class Site:
    """A provisioned broker (plain + TLS) and the core's configuration for it."""

    broker: MosquittoBroker
    tls_port: int
    ca_file: str
    config: ApplianceConfig
    db: Path
    key: bytes
    tmp: Path

    def address(self, user: str, password: str, tls: bool) -> BrokerAddress:
        """How a client with this login reaches one of the two listeners."""
        if tls:
            return BrokerAddress(
                "127.0.0.1", self.tls_port, user, password, ca_file=self.ca_file
            )
        return BrokerAddress("127.0.0.1", self.broker.port, user, password)

    def shim(self, adapter: RaceSimulatorAdapter) -> ShimService:
        """The real shim of car1-pc1 over TLS (not started)."""
        return ShimService(
            ShimConfig(
                source=SHIM_USER,
                broker=self.address(SHIM_USER, SHIM_PASSWORD, tls=True),
                team_key=self.key,
                spool_path=str(self.tmp / f"{SHIM_USER}.spool"),
            ),
            adapter,
        )

    def core(self) -> CoreService:
        """A started core, connected (its broker session is persistent)."""
        core = CoreService(self.config, self.key)
        core.start()
        assert core.connection.connected.wait(10), "the core could not connect"
        return core


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    pki = ensure_pki(tmp_path / "security", ["127.0.0.1", "localhost"])
    tls_port = free_port()
    broker = MosquittoBroker(
        tmp_path / "broker",
        port=free_port(),
        tls=TlsListener(tls_port, pki.server_cert, pki.server_key, "127.0.0.1"),
    )
    for user, password in (
        (APPLIANCE_USER, APPLIANCE_PASSWORD),
        (SHIM_USER, SHIM_PASSWORD),
        (HOSTILE_USER, HOSTILE_PASSWORD),  # a paired device: it has its own login
    ):
        broker.add_user(user, password)
    broker.write_config(APPLIANCE_USER)
    broker.start()
    assert wait_for(lambda: _accepts(broker, tls_port), 5)
    monkeypatch.setenv("PITBOX_MQTT_PASSWORD", APPLIANCE_PASSWORD)
    db = tmp_path / "appliance.sqlite3"
    config = ApplianceConfig(
        mqtt=MqttConfig(host="127.0.0.1", port=broker.port, username=APPLIANCE_USER),
        core=CoreConfig(db_url=f"sqlite:///{db}"),
    )
    try:
        yield Site(
            broker, tls_port, str(pki.ca_cert), config, db, os.urandom(32), tmp_path
        )
    finally:
        broker.stop()


# ---- client-id takeover ---------------------------------------------------------------
def test_a_device_using_the_cores_or_a_shims_client_id_disconnects_neither(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="driver_pc.protocol.mqtt")
    core = site.core()
    core_changes: list[bool] = []
    core.connection.on_connection_change = core_changes.append
    want = expected_batches(_race(laps=2, speed=10.0, seed=11))
    shim = site.shim(_race(laps=2, speed=10.0, seed=11))
    shim_changes: list[bool] = []
    sender_hook = shim.connection.on_connection_change
    assert sender_hook is not None

    def shim_changed(connected: bool) -> None:
        shim_changes.append(connected)
        sender_hook(connected)

    shim.connection.on_connection_change = shim_changed
    stop = threading.Event()
    thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
    hostile: list[MqttConnection] = []
    try:
        thread.start()
        assert wait_for(lambda: stored_counts(site.db)[0] > 10, 20), "no telemetry"
        streaming_changes = list(shim_changes)
        # The attacker, with its own valid login, asks for the others' client ids on
        # both listeners, as a persistent and as a clean session.
        for client_id, tls, clean in (
            (CORE_MQTT_USER, True, True),
            (f"shim-{SHIM_USER}", True, True),
            (CORE_MQTT_USER, False, False),
            (SHIM_USER, False, True),
        ):
            connection = MqttConnection(
                client_id,
                site.address(HOSTILE_USER, HOSTILE_PASSWORD, tls),
                clean_session=clean,
            )
            connection.start()
            hostile.append(connection)
        # The broker accepts the attacker's logins, but under its own name: the four
        # connections take each other's place, nobody else's.
        assert wait_for(lambda: _warnings_for(caplog, HOSTILE_USER) >= 3, 15)
        assert wait_for(lambda: shim.final_spool_depth is not None, 60)
        core_seen = list(core_changes)
    finally:
        for connection in hostile:
            connection.stop()
        stop.set()
        thread.join(timeout=15)
        core.stop()
    assert shim.final_spool_depth == 0
    chunks, distinct, _laps = stored_counts(site.db)
    assert (chunks, distinct) == (want, want), "telemetry was lost or doubled"
    assert core_seen == [], "the real core was disconnected"
    # The shim's own stop at the end of its race is its only disconnect.
    after = shim_changes[len(streaming_changes) :]
    assert after in ([], [False]), f"the real shim was disconnected: {after}"
    assert _warnings_for(caplog, CORE_MQTT_USER) == 0
    assert _warnings_for(caplog, SHIM_USER) == 0
    log = site.broker.log_file.read_text()
    assert f"as {HOSTILE_USER} (" in log
    assert f"Client {CORE_MQTT_USER} already connected" not in log
    assert f"Client {SHIM_USER} already connected" not in log


def test_a_second_connection_on_the_same_login_replaces_the_first_with_a_warning(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="driver_pc.protocol.mqtt")
    address = site.address(HOSTILE_USER, HOSTILE_PASSWORD, tls=False)
    first = MqttConnection("first", address)
    second = MqttConnection("second", address)
    first.start()
    try:
        assert first.connected.wait(10)
        second.start()
        assert wait_for(lambda: _warnings_for(caplog, HOSTILE_USER) >= 1, 10)
        warning = next(r for r in caplog.records if WARNING_MARK in r.getMessage())
        assert warning.levelno == logging.WARNING
        assert f"{HOSTILE_USER} (client id first)" in warning.getMessage()
        assert "127.0.0.1" in warning.getMessage()
    finally:
        second.stop()
        first.stop()
    # Our own stop is no surprise: logged at INFO only.
    stops = [r for r in caplog.records if "disconnected from broker" in r.getMessage()]
    assert stops
    assert all(r.levelno == logging.INFO for r in stops)


# ---- persistence --------------------------------------------------------------------
@pytest.mark.timeout(180)
def test_the_cores_queue_and_retained_state_survive_a_broker_kill_9(
    site: Site,
) -> None:
    """Core away, shim streams into the broker, broker killed: nothing is lost."""
    core = site.core()
    core.stop()  # its session (subscription, queue) stays with the broker
    tools = MqttConnection(
        APPLIANCE_USER, site.address(APPLIANCE_USER, APPLIANCE_PASSWORD, tls=False)
    )
    tools.start()
    assert tools.connected.wait(10)
    published: list[int] = []
    tools.on_published = published.append
    state = topics.live_state("car7")
    mid = tools.publish(state, b'{"car": "car7"}')
    assert mid > 0
    assert wait_for(lambda: mid in published, 5)  # QoS 0: written to the socket
    tools.stop()
    want = expected_batches(_race(laps=1, speed=0.0, seed=12))
    shim = site.shim(_race(laps=1, speed=0.0, seed=12))
    shim.run(threading.Event())
    # The broker acknowledged everything: the shim's spool no longer holds it.
    assert shim.final_spool_depth == 0
    acked_at = time.time()
    snapshot = site.broker.data_dir / "mosquitto.db"
    assert wait_for(
        lambda: snapshot.exists() and snapshot.stat().st_mtime > acked_at, 10
    ), "no snapshot within the autosave interval"

    _kill_9(site.broker)
    assert "terminating" not in site.broker.log_file.read_text()
    site.broker.start()

    core = site.core()
    try:
        assert wait_for(lambda: stored_counts(site.db)[1] >= want, 30)
    finally:
        core.stop()
    assert stored_counts(site.db)[:2] == (want, want)
    assert core.ingestor.stats.rejected == {}
    retained = _retained(site, topics.live_state("car7").name)
    assert retained == b'{"car": "car7"}'


def test_without_a_snapshot_a_kill_9_loses_the_cores_queue(site: Site) -> None:
    """The remaining window, held: what arrived after the last snapshot is gone."""
    core = site.core()
    core.stop()
    site.broker.stop()  # a clean stop saves: the core's session is on disk
    slow = MosquittoBroker(
        site.broker.run_dir,
        site.broker.port,
        tls=site.broker.tls,
        autosave_interval_s=3600,
    )
    slow.write_config(APPLIANCE_USER)
    slow.start()
    try:
        shim = site.shim(_race(laps=1, speed=0.0, seed=13))
        shim.run(threading.Event())
        assert shim.final_spool_depth == 0  # acknowledged by the broker
        _kill_9(slow)
        slow.start()
        core = site.core()
        time.sleep(3.0)  # time enough to deliver a queue, were there one
        core.stop()
    finally:
        slow.stop()
    assert stored_counts(site.db)[0] == 0


# ---- provisioning ---------------------------------------------------------------------
def test_every_listener_ties_client_ids_to_logins_and_programs_have_logins(
    site: Site,
) -> None:
    conf = site.broker.config_file.read_text()
    listeners = conf.count("\nlistener ")
    assert listeners == 2
    assert conf.count("\nuse_username_as_clientid true\n") == listeners
    assert "\nautosave_interval 2\n" in conf
    assert "\nautosave_on_changes false\n" in conf
    logins = password_users(site.broker.password_file)
    assert set(PROGRAM_USERS) <= logins
    acl = site.broker.acl_file.read_text()
    for user in (APPLIANCE_USER, *PROGRAM_USERS):
        # The dashboard only reads the live topics (it sends through the API).
        access = (
            "read pitbox/v1/live/#"
            if user in READ_ONLY_USERS
            else ("readwrite pitbox/v1/#")
        )
        assert f"user {user}\ntopic {access}\n" in acl
    # Each program login opens with the appliance password, and only with it.
    for user in PROGRAM_USERS:
        good = MqttConnection(user, site.address(user, APPLIANCE_PASSWORD, False))
        good.start()
        try:
            assert good.connected.wait(10), user
        finally:
            good.stop()
    wrong = MqttConnection("x", site.address(CORE_MQTT_USER, "not-it", False))
    wrong.start()
    try:
        assert wait_for(lambda: wrong.refused is not None, 10)
        assert not wrong.connected.is_set()
    finally:
        wrong.stop()


def test_program_logins_follow_a_changed_appliance_password(tmp_path: Path) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    broker = MosquittoBroker(tmp_path, port=free_port())
    broker.add_user(APPLIANCE_USER, "old-password")
    broker.add_user(SHIM_USER, SHIM_PASSWORD)
    broker.write_config(APPLIANCE_USER)
    broker.add_user(APPLIANCE_USER, "new-password")
    broker.write_config(APPLIANCE_USER)

    rows = [line.partition(":") for line in broker.password_file.read_text().split()]
    lines = {user: hashed for user, _, hashed in rows}
    assert sorted(lines) == sorted([APPLIANCE_USER, SHIM_USER, *PROGRAM_USERS])
    assert {lines[user] for user in PROGRAM_USERS} == {lines[APPLIANCE_USER]}
    assert lines[SHIM_USER] != lines[APPLIANCE_USER]


def test_a_program_login_of_its_own_survives_a_new_appliance_password(
    tmp_path: Path,
) -> None:
    """The dashboard's own login keeps its password; copied ones follow the appliance's."""
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    broker = MosquittoBroker(tmp_path, port=free_port())
    broker.add_user(APPLIANCE_USER, "old-password")
    broker.write_config(APPLIANCE_USER)  # every program login copied
    broker.add_user(DASHBOARD_MQTT_USER, "dashboards-own")
    broker.write_config(APPLIANCE_USER)
    before = dict(
        line.partition(":")[::2] for line in broker.password_file.read_text().split()
    )
    broker.add_user(APPLIANCE_USER, "new-password")
    broker.write_config(APPLIANCE_USER)
    after = dict(
        line.partition(":")[::2] for line in broker.password_file.read_text().split()
    )
    assert after[DASHBOARD_MQTT_USER] == before[DASHBOARD_MQTT_USER]
    assert after[CORE_MQTT_USER] == after[APPLIANCE_USER] != before[APPLIANCE_USER]
    broker.remove_user(DASHBOARD_MQTT_USER)  # forgotten: copied again next time
    broker.write_config(APPLIANCE_USER)
    again = dict(
        line.partition(":")[::2] for line in broker.password_file.read_text().split()
    )
    assert again[DASHBOARD_MQTT_USER] == again[APPLIANCE_USER]


def test_program_logins_are_the_ones_the_programs_use() -> None:
    from cloud_sync.report.command import add_command

    class NoSets:
        def add_arguments(self, parser: argparse.ArgumentParser) -> None:
            parser.add_argument("session")

        def resolve(self, args: argparse.Namespace, outbox: Path) -> Path:
            return outbox

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_command(sub, NoSets())
    # pitbox report announces through the API now (issue 13 §4); its old broker
    # login stays reserved so no device can take that name.
    assert sub.choices["report"].get_default("broker_user") is None
    report_user = "pitbox-report"
    mqtt = MqttConfig()
    assert (mqtt.core_username, mqtt.dashboard_username) == (
        CORE_MQTT_USER,
        DASHBOARD_MQTT_USER,
    )
    assert [CORE_MQTT_USER, DASHBOARD_MQTT_USER, report_user] == list(PROGRAM_USERS)
    assert mqtt.username not in PROGRAM_USERS


@pytest.mark.parametrize("name", [*PROGRAM_USERS, "pitbox-uploader", "appliance"])
def test_a_device_cannot_be_named_like_an_appliance_login(name: str) -> None:
    with pytest.raises(ValueError, match="device name"):
        check_source(name)


def test_car_names_still_pair() -> None:
    assert check_source("car42-pc1") == "car42-pc1"


# ---- helpers ----------------------------------------------------------------------------
def _race(laps: int, speed: float, seed: int) -> RaceSimulatorAdapter:
    """A simulated race with no opponents (small messages, quick to stream)."""
    return RaceSimulatorAdapter(laps=laps, speed=speed, seed=seed)


def _accepts(broker: MosquittoBroker, tls_port: int) -> bool:
    import socket

    try:
        for port in (broker.port, tls_port):
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def _warnings_for(caplog: pytest.LogCaptureFixture, username: str) -> int:
    """How many unexpected-disconnect warnings name ``username``'s connections."""
    return sum(
        1
        for record in list(caplog.records)
        if record.levelno == logging.WARNING
        and WARNING_MARK in record.getMessage()
        and f"of {username} (" in record.getMessage()
    )


def _kill_9(broker: MosquittoBroker) -> None:
    """SIGKILL the broker (no chance to save) and reap it."""
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: not broker.running, 5)
    broker.stop()  # reaps the process and closes the log; nothing is signalled


def _retained(site: Site, topic: str) -> bytes | None:
    """The retained message on ``topic``, as a fresh subscriber gets it."""
    got: list[bytes] = []
    reader = MqttConnection(
        APPLIANCE_USER, site.address(APPLIANCE_USER, APPLIANCE_PASSWORD, False)
    )
    reader.subscribe(topic, 0, lambda _t, payload, _m: got.append(payload))
    reader.start()
    try:
        assert reader.connected.wait(10)
        wait_for(lambda: bool(got), 5)
    finally:
        reader.stop()
    return got[0] if got else None
