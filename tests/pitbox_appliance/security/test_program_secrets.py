"""Each appliance program holds only the secrets it uses (issue 14 §3).

The dashboard gets its own broker login (read-only on the live topics) and its own API
token, never the team key, the appliance's MQTT password or another program's token;
the core is told the API tokens' digests only. Read from the rendered
``supervisord.conf`` through supervisor's own parser (the environment it gives each
process), and checked against a real Mosquitto.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver_pc.protocol import topics
from driver_pc.protocol.mqtt import BrokerAddress, MqttConnection
from pitbox_appliance.api.auth import TokenStore, program_tokens
from pitbox_appliance.broker import (
    MosquittoBroker,
    free_port,
    password_users,
    render_supervisor_config,
)
from pitbox_appliance.config import DASHBOARD_MQTT_USER
from tests.conftest import mosquitto_available, wait_for

TEAM_KEY = "ab" * 32
APPLIANCE_PASSWORD = "appliance-pw-7c1d2e"
DASHBOARD_PASSWORD = "dashboard-pw-4f9a0b"


def _environments(path: Path) -> dict[str, dict[str, str]]:
    """program name → the environment supervisor gives it (its own parser)."""
    options = pytest.importorskip("supervisor.options")
    server = options.ServerOptions()
    server.realize(args=["-c", str(path)])
    return {
        group.name: dict(group.process_configs[0].environment or {})
        for group in server.process_group_configs
    }


def test_each_program_gets_only_its_own_secrets(tmp_path: Path) -> None:
    tokens = program_tokens()
    path = render_supervisor_config(
        tmp_path,
        "/usr/bin/python3",
        tmp_path / "appliance.yaml",
        TEAM_KEY,
        APPLIANCE_PASSWORD,
        api_tokens=tokens.core,
        postrace=True,
        dashboard_api_token=tokens.dashboard,
        postrace_api_token=tokens.postrace,
        dashboard_mqtt_password=DASHBOARD_PASSWORD,
    )
    env = _environments(path)
    assert env["pitbox-dashboard"] == {
        "PITBOX_MQTT_PASSWORD": DASHBOARD_PASSWORD,
        "PITBOX_API_TOKEN": tokens.dashboard,
    }
    assert env["pitbox-postrace"] == {
        "PITBOX_API_TOKEN": tokens.postrace,
        "PITBOX_SYNC_TARGET": "",
        "PITBOX_S3_ENDPOINT_URL": "",
    }
    core = env["pitbox-core"]
    assert core["PITBOX_TEAM_KEY"] == TEAM_KEY
    assert core["PITBOX_MQTT_PASSWORD"] == APPLIANCE_PASSWORD
    # The core can check both programs' tokens but holds neither.
    accepted = TokenStore.from_spec(core["PITBOX_API_TOKENS"])
    assert {t.principal for t in accepted} == {"service:dashboard", "service:postrace"}
    assert accepted.verify(tokens.dashboard) is not None
    assert accepted.verify(tokens.postrace) is not None
    secrets = {
        "team key": TEAM_KEY,
        "appliance MQTT password": APPLIANCE_PASSWORD,
        "dashboard token": tokens.dashboard,
        "post-race token": tokens.postrace,
        "dashboard MQTT password": DASHBOARD_PASSWORD,
    }
    allowed = {
        "pitbox-core": {"team key", "appliance MQTT password"},
        "pitbox-dashboard": {"dashboard token", "dashboard MQTT password"},
        "pitbox-postrace": {"post-race token"},
        "mosquitto": set(),
    }
    for program, may_hold in allowed.items():
        held = " ".join(env[program].values())
        found = {name for name, secret in secrets.items() if secret in held}
        assert found == may_hold, program


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    broker = MosquittoBroker(tmp_path / "broker", port=free_port())
    broker.add_user("appliance", APPLIANCE_PASSWORD)
    broker.add_user(DASHBOARD_MQTT_USER, DASHBOARD_PASSWORD)
    broker.write_config(appliance_user="appliance")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _connect(broker: MosquittoBroker, user: str, password: str) -> MqttConnection:
    connection = MqttConnection(
        user, BrokerAddress(broker.host, broker.port, user, password)
    )
    connection.start()
    return connection


def test_the_dashboard_login_has_its_own_password_and_only_reads_live_topics(
    broker: MosquittoBroker,
) -> None:
    core = _connect(broker, "pitbox-core", APPLIANCE_PASSWORD)
    dashboard = _connect(broker, DASHBOARD_MQTT_USER, DASHBOARD_PASSWORD)
    impostor = MqttConnection(
        "impostor",
        BrokerAddress(
            broker.host, broker.port, DASHBOARD_MQTT_USER, APPLIANCE_PASSWORD
        ),
    )
    impostor.start()
    seen: list[str] = []
    commands: list[bytes] = []
    lock = threading.Lock()

    def on_live(topic: str, _payload: bytes, _mid: int) -> None:
        with lock:
            seen.append(topic)

    def on_command(_topic: str, payload: bytes, _mid: int) -> None:
        with lock:
            commands.append(payload)

    try:
        assert core.connected.wait(10)
        assert dashboard.connected.wait(10)
        # The appliance password does not open the dashboard's login.
        assert not impostor.connected.wait(2)
        dashboard.subscribe(topics.ALL_LIVE_STATE, 0, on_live)
        core.subscribe(topics.shim_commands("car1-pc1").name, 1, on_command)
        time.sleep(0.5)  # both subscriptions in place
        core.publish(topics.live_state("car1"), b"{}")
        assert wait_for(lambda: seen == [topics.live_state("car1").name], 10)
        # A command published with the dashboard's login never reaches anyone.
        dashboard.publish(topics.shim_commands("car1-pc1"), b"forged")
        core.publish(topics.shim_commands("car1-pc1"), b"real")
        assert wait_for(lambda: commands == [b"real"], 10)
        time.sleep(0.5)
        assert commands == [b"real"]
    finally:
        for connection in (core, dashboard, impostor):
            connection.stop()


def test_rewriting_the_broker_config_keeps_the_dashboards_own_password(
    broker: MosquittoBroker,
) -> None:
    before = broker.password_file.read_text()
    line = next(
        row for row in before.splitlines() if row.startswith(f"{DASHBOARD_MQTT_USER}:")
    )
    broker.write_config(appliance_user="appliance")  # as `pitbox devices setup` does
    after = broker.password_file.read_text()
    assert line in after.splitlines()
    assert {"appliance", "pitbox-core", DASHBOARD_MQTT_USER} <= password_users(
        broker.password_file
    )
    acl = broker.acl_file.read_text()
    assert f"user {DASHBOARD_MQTT_USER}\ntopic read pitbox/v1/live/#\n" in acl
    assert "user pitbox-core\ntopic readwrite pitbox/v1/#\n" in acl


@pytest.mark.timeout(60)
def test_the_processes_supervisor_spawns_hold_only_their_own_secrets(
    tmp_path: Path,
) -> None:
    """Supervisord started from the rendered config; each program dumps its environ."""
    pytest.importorskip("supervisor")
    out = tmp_path / "env"
    out.mkdir()
    # Stands in for the venv's python: records the environment it was given.
    fake_python = tmp_path / "python"
    fake_python.write_text(
        "#!/bin/sh\n"
        f'env > "{out}/$2.env.part" && mv "{out}/$2.env.part" "{out}/$2.env"\n'
        "exec sleep 60\n"
    )
    fake_python.chmod(0o755)
    tokens = program_tokens()
    run_dir = tmp_path / "run"
    conf = render_supervisor_config(
        run_dir,
        str(fake_python),
        tmp_path / "appliance.yaml",
        TEAM_KEY,
        APPLIANCE_PASSWORD,
        api_tokens=tokens.core,
        postrace=True,
        dashboard_api_token=tokens.dashboard,
        postrace_api_token=tokens.postrace,
        dashboard_mqtt_password=DASHBOARD_PASSWORD,
    )
    supervisord = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    modules = {
        "pitbox-core": "pitbox_appliance.core",
        "pitbox-dashboard": "pitbox_appliance.dashboard",
        "pitbox-postrace": "pitbox_appliance.postrace",
    }
    try:
        assert wait_for(
            lambda: all((out / f"{m}.env").exists() for m in modules.values()), 30
        ), sorted(p.name for p in out.iterdir())
    finally:
        supervisord.send_signal(signal.SIGTERM)
        supervisord.wait(30)
    spawned = {
        program: dict(
            line.split("=", 1)
            for line in (out / f"{module}.env").read_text().splitlines()
            if "=" in line
        )
        for program, module in modules.items()
    }
    dashboard = spawned["pitbox-dashboard"]
    assert dashboard["PITBOX_MQTT_PASSWORD"] == DASHBOARD_PASSWORD
    assert dashboard["PITBOX_API_TOKEN"] == tokens.dashboard
    assert "PITBOX_TEAM_KEY" not in dashboard
    assert "PITBOX_API_TOKENS" not in dashboard
    for program, environ in spawned.items():
        values = " ".join(environ.values())
        assert (TEAM_KEY in values) == (program == "pitbox-core"), program
        assert (APPLIANCE_PASSWORD in values) == (program == "pitbox-core"), program
        assert (tokens.dashboard in values) == (program == "pitbox-dashboard"), program
        assert (tokens.postrace in values) == (program == "pitbox-postrace"), program
