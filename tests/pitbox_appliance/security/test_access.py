"""Access control: TLS with the appliance CA, pairing, per-device keys, revocation, no leaks.

Real parts throughout: Mosquitto with a TLS listener on a certificate from a CA made
by the test, the core service with its API, the shim streaming simulated laps.

Held by other tests (issue 6, item 4):
- replayed messages are rejected: tests/pitbox_appliance/core/test_hostile_messages.py::
  test_bad_messages_rejected_counted_and_not_stored (and tests/pitbox_appliance/api/test_api.py::
  test_resent_message_is_a_duplicate for the WebSocket path);
- API state changes need a token with the route's scope: tests/pitbox_appliance/api/test_api.py::
  test_state_changes_need_a_token_with_the_scope and
  test_no_tokens_configured_refuses_every_change;
- the plain listener refuses anonymous and unknown users: tests/pitbox_appliance/test_broker.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

# These tests talk MQTT directly to check what the broker allows, not our transport.
import paho.mqtt.client as mqtt  # noqa: TID251
import pytest
import yaml
from cryptography import x509
from paho.mqtt.enums import CallbackAPIVersion  # noqa: TID251

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pairing import (
    ca_path,
    load_credentials,
    pair,
)
from driver_pc.pairing import main as shim_pair_main
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol import topics
from driver_pc.protocol.codec import Codec, DecodeError, Keyring
from driver_pc.protocol.messages import TelemetryBatch
from driver_pc.protocol.mqtt import MqttConnection
from driver_pc.protocol.pairing import PairingError, open_reply, pairing_proof
from driver_pc.service import ShimConfig, ShimService
from pitbox_appliance.api.app import bound_port, start_api
from pitbox_appliance.broker import MosquittoBroker, TlsListener, free_port
from pitbox_appliance.cli import main as pitbox_main
from pitbox_appliance.config import (
    ApplianceConfig,
    CoreConfig,
    MqttConfig,
    SecurityConfig,
)
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.devices import DeviceRegistry, PairingRefused
from pitbox_appliance.security.pki import PkiFiles, ensure_pki
from tests.conftest import mosquitto_available, wait_for

pytestmark = pytest.mark.timeout(60)

APPLIANCE_PASSWORD = "appliance-pw-5a1b9c"
API_TOKEN = "api-token-0f3e5d7c9b1a2f4e"
NAMES = ["127.0.0.1", "localhost"]


@dataclass
class TlsBroker:
    """A broker with the plain listener for the appliance and TLS for driver PCs."""

    broker: MosquittoBroker
    pki: PkiFiles
    port: int
    tls_port: int


@dataclass
class SecureAppliance:
    """Broker, core (no legacy team key) and its API on a background loop."""

    tls: TlsBroker
    core: CoreService
    registry: DeviceRegistry
    api_url: str
    config_path: Path
    tmp: Path


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    pki = ensure_pki(tmp_path / "security", NAMES)
    port, tls_port = free_port(), free_port()
    listener = TlsListener(tls_port, pki.server_cert, pki.server_key, "127.0.0.1")
    broker = MosquittoBroker(tmp_path / "broker", port=port, tls=listener)
    broker.add_user("appliance", APPLIANCE_PASSWORD)
    broker.write_config(appliance_user="appliance")
    broker.start()
    assert wait_for(lambda: _port_open(tls_port), 5)
    try:
        yield TlsBroker(broker, pki, port, tls_port)
    finally:
        broker.stop()


@pytest.fixture
def secure(
    tls_broker: TlsBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecureAppliance]:
    monkeypatch.setenv("PITBOX_MQTT_PASSWORD", APPLIANCE_PASSWORD)
    monkeypatch.setenv("PITBOX_API_TOKENS", f"{API_TOKEN}:read+commands+driver")
    config = ApplianceConfig(
        mqtt=MqttConfig(host="127.0.0.1", port=tls_broker.port, username="appliance"),
        core=CoreConfig(db_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", api_port=0),
        security=SecurityConfig(
            dir=str(tls_broker.pki.directory),
            broker_run_dir=str(tls_broker.broker.run_dir),
            tls_port=tls_broker.tls_port,
            legacy_team_key=False,
        ),
    )
    config_path = tmp_path / "appliance.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    core = CoreService(config, None)
    core.start()
    assert core.connection.connected.wait(10)
    loop = asyncio.new_event_loop()
    runner = loop.run_until_complete(start_api(core))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{bound_port(runner)}"
    try:
        yield SecureAppliance(
            tls_broker, core, core.devices, url, config_path, tmp_path
        )
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        core.stop()


# ---- TLS ------------------------------------------------------------------------------
def test_tls_files_are_private_and_name_the_appliance(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "sec", ["pitbox.local", "10.0.0.5"])
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    for path in (pki.ca_cert, pki.ca_key, pki.server_cert, pki.server_key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["pitbox.local"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    # Second setup keeps the CA; a new name re-issues the server cert from it.
    ca_before = pki.ca_cert.read_bytes()
    again = ensure_pki(tmp_path / "sec", ["pitbox.local", "10.0.0.6"])
    assert again.ca_cert.read_bytes() == ca_before
    renewed = x509.load_pem_x509_certificate(again.server_cert.read_bytes())
    renewed.verify_directly_issued_by(ca)
    assert renewed.serial_number != cert.serial_number


def test_tls_handshake_needs_the_appliance_ca(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    good = ssl.create_default_context(cafile=str(tls_broker.pki.ca_cert))
    assert _handshake(good, tls_broker.tls_port).startswith("TLSv1.")
    other_ca = ensure_pki(tmp_path / "other", NAMES).ca_cert
    for context in (
        ssl.create_default_context(),  # the system's CAs only
        ssl.create_default_context(cafile=str(other_ca)),  # another appliance's CA
    ):
        with pytest.raises(ssl.SSLCertVerificationError):
            _handshake(context, tls_broker.tls_port)


def test_anonymous_clients_are_refused_on_both_listeners(
    tls_broker: TlsBroker,
) -> None:
    for port, tls in ((tls_broker.port, False), (tls_broker.tls_port, True)):
        client = _Client(tls_broker, port, tls=tls)
        assert client.connect_result() == "Not authorized", port


# ---- ACL --------------------------------------------------------------------------------
def test_driver_pc_publishes_only_its_own_telemetry_and_reads_only_its_commands(
    tls_broker: TlsBroker,
) -> None:
    broker = tls_broker.broker
    broker.add_user("car7-pc1", "car7-secret-pw")
    app = _Client(tls_broker, tls_broker.port, "appliance", APPLIANCE_PASSWORD)
    driver = _Client(
        tls_broker, tls_broker.tls_port, "car7-pc1", "car7-secret-pw", tls=True
    )
    try:
        assert app.connect_result() == "Success"
        assert driver.connect_result() == "Success"
        app.subscribe("pitbox/v1/shim/+/data")
        driver.subscribe("pitbox/v1/shim/car7-pc1/cmd")
        driver.subscribe("pitbox/v1/shim/car9-pc1/cmd")
        driver.subscribe("pitbox/v1/shim/+/data")
        driver.publish("pitbox/v1/shim/car9-pc1/data", b"forged")
        driver.publish("pitbox/v1/shim/car7-pc1/data", b"mine")
        app.publish("pitbox/v1/shim/car9-pc1/cmd", b"not yours")
        app.publish("pitbox/v1/shim/car7-pc1/cmd", b"yours")
        assert app.received(1) == [("pitbox/v1/shim/car7-pc1/data", b"mine")]
        assert driver.received(1) == [("pitbox/v1/shim/car7-pc1/cmd", b"yours")]
        time.sleep(0.5)  # anything denied would have arrived by now
        assert app.received(0) == []
        assert driver.received(0) == []
    finally:
        app.close()
        driver.close()


# ---- pairing ----------------------------------------------------------------------------
def test_pairing_round_trip_streams_over_tls_and_leaks_no_secret(
    secure: SecureAppliance,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    code = _start_pairing(secure, "car5-pc1", capsys)
    creds_path = secure.tmp / "driver-pc" / "credentials.json"
    assert (
        shim_pair_main(
            [
                "--appliance",
                secure.api_url,
                "--code",
                code,
                "--credentials",
                str(creds_path),
            ]
        )
        == 0
    )
    capsys.readouterr()
    for path in (creds_path, ca_path(creds_path)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    creds = load_credentials(creds_path)
    assert (creds.source, creds.mqtt_port) == ("car5-pc1", secure.tls.tls_port)
    assert creds.ca_pem == secure.tls.pki.ca_cert.read_text()
    address = creds.broker_address(ca_path(creds_path))
    shim = ShimService(
        ShimConfig(
            source=creds.source,
            broker=address,
            team_key=creds.message_key,
            spool_path=str(secure.tmp / "car5.spool"),
        ),
        RaceSimulatorAdapter(laps=3, speed=4.0, seed=3),
    )
    stop = threading.Event()
    thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
    thread.start()
    core = secure.core
    try:
        assert wait_for(lambda: core.ingestor.stats.laps >= 1, 40)
        # A command from the pit wall, sealed with this device's own key.
        reply = _post(
            f"{secure.api_url}/api/v1/cars/car5/commands",
            {"kind": "message", "args": {"text": "box this lap"}},
            API_TOKEN,
        )
        assert wait_for(lambda: "box this lap" in shim.messages_shown, 15)
        assert wait_for(
            lambda: (
                (core.command_status(reply["command_id"]) or {}).get("result")
                is not None
            ),
            15,
        )
    finally:
        stop.set()
        thread.join(20)
    assert core.ingestor.stats.rejected == {}
    secrets_ = {
        "pairing code": code,
        "pairing code (plain)": code.replace("-", ""),
        "message key": creds.message_key.hex(),
        "mqtt password": creds.mqtt_password,
        "appliance password": APPLIANCE_PASSWORD,
        "api token": API_TOKEN,
    }
    logs = "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    )
    broker_log = secure.tls.broker.log_file.read_text(errors="replace")
    # DEBUG really was on, and both sides logged through pairing and streaming.
    assert logging.getLogger("driver_pc").isEnabledFor(logging.DEBUG)
    names = {r.name.split(".")[0] for r in caplog.records}
    assert {"driver_pc", "pitbox_appliance", "aiohttp"} <= names
    for what, value in secrets_.items():
        assert value not in logs, f"{what} in the log records"
        assert value not in broker_log, f"{what} in the broker log"
    # The registry holds the key; the broker's password file holds only a hash.
    assert creds.mqtt_password not in secure.registry.password_file.read_text()


def test_paired_shim_command_streams_with_its_stored_credentials(
    secure: SecureAppliance, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _start_pairing(secure, "car11-pc1", capsys)
    creds_path = secure.tmp / "pc" / "credentials.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITBOX_")}
    paired = subprocess.run(
        [
            *(sys.executable, "-m", "driver_pc", "pair"),
            *("--appliance", secure.api_url, "--code", code.lower()),
            *("--credentials", str(creds_path)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert paired.returncode == 0, paired.stderr
    assert "paired as car11-pc1" in paired.stdout
    # Its POV video goes up too, signed with the PC's own key (it holds no token).
    recordings, stored = secure.tmp / "obs", secure.tmp / "videos"
    recordings.mkdir()
    (recordings / "pov-001.mp4").write_bytes(os.urandom(50_000))
    section = secure.core.config.core.model_copy(update={"video_dir": str(stored)})
    secure.core.config = secure.core.config.model_copy(update={"core": section})
    streamed = subprocess.run(
        [
            *(sys.executable, "-m", "driver_pc", "--credentials", str(creds_path)),
            *("--adapter", "simulator", "--laps", "2", "--speed", "12"),
            *("--spool", str(secure.tmp / "car11.spool")),
            *("--video-dir", str(recordings), "--api-url", secure.api_url),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=45,
        check=False,
    )
    assert streamed.returncode == 0, streamed.stderr
    stats = secure.core.ingestor.stats
    assert wait_for(lambda: stats.laps >= 1, 20)
    assert stats.rejected == {}
    assert creds_path.read_text().count("message_key") == 1
    assert load_credentials(creds_path).message_key.hex() not in streamed.stderr
    # ... and it said who sits at it.
    registered = _get(f"{secure.api_url}/api/v1/driver/registrations")["registrations"]
    assert [r["source"] for r in registered] == ["car11-pc1"]
    assert registered[0]["driver_name"]
    assert registered[0]["session_id"] is not None
    [video] = stored.rglob("*.mp4")
    assert video.parent.name == "car11-pc1"
    assert video.read_bytes() == (recordings / "pov-001.mp4").read_bytes()


def test_setup_gives_the_broker_its_tls_listener(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    run_dir = tmp_path / "broker"
    MosquittoBroker(run_dir, 1883).add_user("appliance", APPLIANCE_PASSWORD)
    config = {
        "security": {
            "dir": str(tmp_path / "sec"),
            "broker_run_dir": str(run_dir),
            "tls_port": 18883,
        }
    }
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(config))
    assert pitbox_main(["devices", "--config", str(path), "setup"]) == 0
    out = capsys.readouterr().out
    assert "CA fingerprint (SHA-256):" in out
    conf = (run_dir / "mosquitto.conf").read_text()
    assert "listener 1883 127.0.0.1" in conf
    assert "listener 18883 0.0.0.0" in conf
    assert f"certfile {tmp_path / 'sec' / 'broker.crt'}" in conf
    assert pitbox_main(["devices", "--config", str(path), "pair", "--name", "x"]) == 2
    assert "use <car>-<pc>" in capsys.readouterr().err


def test_used_and_expired_codes_are_refused(
    secure: SecureAppliance, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _start_pairing(secure, "car6-pc1", capsys)
    assert pair(secure.api_url, code).source == "car6-pc1"
    with pytest.raises(PairingError, match=r"\(403\).*used or wrong"):
        pair(secure.api_url, code)
    pending = secure.registry.start_pairing("car6-pc2", ttl_s=0.05)
    time.sleep(0.1)
    with pytest.raises(PairingError, match=r"\(403\).*expired"):
        pair(secure.api_url, pending.code)
    # The expired code is gone from the registry: it costs no more work.
    assert "car6-pc2" not in secure.registry.path.read_text()
    # An already-paired name cannot be paired again until it is revoked.
    assert pitbox_main(_devices(secure, "pair", "--name", "car6-pc1")) == 2
    assert "already paired" in capsys.readouterr().err


def test_pairing_attempts_are_rate_limited(secure: SecureAppliance) -> None:
    secure.registry.start_pairing("car3-pc1")
    for _ in range(5):
        with pytest.raises(PairingError, match=r"\(403\)"):
            pair(secure.api_url, "0000-0000")
    with pytest.raises(PairingError, match=r"\(429\).*too many"):
        pair(secure.api_url, "0000-0000")


# ``python -c GUESSING_BURST URL N``: N concurrent wrong pairing proofs from
# 127.0.0.1; prints their statuses as JSON.
GUESSING_BURST = """
import asyncio, json, os, sys
import aiohttp

async def main(url, count):
    connector = aiohttp.TCPConnector(limit=0, local_addr=("127.0.0.1", 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        async def guess():
            body = {"nonce": os.urandom(16).hex(), "proof": os.urandom(32).hex()}
            async with http.post(url, json=body) as response:
                return response.status
        print(json.dumps(await asyncio.gather(*(guess() for _ in range(count)))))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@pytest.mark.timeout(120)
def test_a_concurrent_guessing_burst_gets_few_tries_and_stalls_nothing(
    secure: SecureAppliance,
) -> None:
    """300 concurrent guesses from one address while /health is polled (issue 14 §3).

    The address gets its 5 tries, the rest are refused before any scrypt; health stays
    quick; the real code, from a second address, still pairs.
    """
    pending = secure.registry.start_pairing("car3-pc2")
    url = f"{secure.api_url}/api/v1/pair"

    async def poll_health(
        http: aiohttp.ClientSession, burst: asyncio.subprocess.Process
    ) -> list[float]:
        latencies: list[float] = []
        while burst.returncode is None or len(latencies) < 20:
            started = time.perf_counter()
            async with http.get(f"{secure.api_url}/api/v1/health") as response:
                assert response.status == 200
                await response.read()
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)
        return latencies

    async def pair_from(address: str) -> tuple[int, dict[str, Any]]:
        nonce = os.urandom(16)
        body = {"nonce": nonce.hex(), "proof": pairing_proof(pending.code, nonce).hex()}
        connector = aiohttp.TCPConnector(local_addr=(address, 0))
        async with (
            aiohttp.ClientSession(connector=connector) as http,
            http.post(url, json=body) as response,
        ):
            answer = await response.json()
        if response.status != 200:
            return response.status, answer
        return 200, open_reply(pending.code, nonce, answer)

    async def scenario() -> tuple[list[int], list[float], int, tuple[int, Any]]:
        # The guesser is a process of its own, as an attacker's laptop would be: its
        # 300 connections do not compete with the appliance for this process's GIL.
        burst = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            GUESSING_BURST,
            url,
            "300",
            stdout=subprocess.PIPE,
        )
        watcher = aiohttp.TCPConnector(local_addr=("127.0.0.3", 0))
        async with aiohttp.ClientSession(connector=watcher) as http:
            health = asyncio.create_task(poll_health(http, burst))
            output, _ = await burst.communicate()
            latencies = await health
        # The guessing address stays locked out, even with the real code...
        locked, _ = await pair_from("127.0.0.1")
        # ... while the real PC, from its own address, pairs.
        statuses = json.loads(output)
        return statuses, latencies, locked, await pair_from("127.0.0.2")

    statuses, latencies, locked, (status, credentials) = asyncio.run(scenario())
    assert statuses.count(403) == 5, sorted(set(statuses))
    assert statuses.count(429) == 295
    assert locked == 429
    assert status == 200, credentials
    assert credentials["source"] == "car3-pc2"
    latencies.sort()
    p99 = latencies[max(0, round(len(latencies) * 0.99) - 1)]
    logging.getLogger(__name__).info(
        "health during the burst: %d polls, p50 %.1f ms, p99 %.1f ms, max %.1f ms",
        len(latencies),
        latencies[len(latencies) // 2] * 1000,
        p99 * 1000,
        latencies[-1] * 1000,
    )
    assert p99 < 1.0, f"health p99 {p99 * 1000:.0f} ms during the burst"


def test_a_code_dies_after_too_many_wrong_guesses(
    tls_broker: TlsBroker, tmp_path: Path
) -> None:
    registry = DeviceRegistry(tls_broker.pki.directory, tls_broker.broker.run_dir)
    pending = registry.start_pairing("car4-pc1")
    for _ in range(3):
        nonce = os.urandom(16)
        with pytest.raises(PairingRefused, match="used or wrong"):
            registry.redeem(nonce, os.urandom(32), max_wrong=3)
    # Retired after the third wrong guess: the real code no longer works.
    assert registry.pending() == []
    nonce = os.urandom(16)
    with pytest.raises(PairingRefused, match="used or wrong"):
        registry.redeem(nonce, pairing_proof(pending.code, nonce), max_wrong=3)
    # Its owner makes a new one, which works.
    again = registry.start_pairing("car4-pc1")
    nonce = os.urandom(16)
    new = registry.redeem(nonce, pairing_proof(again.code, nonce), max_wrong=3)
    assert new.device.source == "car4-pc1"


def test_bad_pairing_requests_get_clear_errors(secure: SecureAppliance) -> None:
    with pytest.raises(PairingError, match="pairing code is 8 characters"):
        pair(secure.api_url, "short")
    with pytest.raises(PairingError, match=r"\(400\).*proof"):
        _post(f"{secure.api_url}/api/v1/pair", {"nonce": "00" * 16, "proof": "zz"})


# ---- revocation and unknown keys ----------------------------------------------------------
def test_revoked_device_is_refused_by_the_broker_and_the_core(
    secure: SecureAppliance, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _start_pairing(secure, "car8-pc1", capsys)
    creds = pair(secure.api_url, code)
    ca_file = secure.tmp / "ca.crt"
    ca_file.write_text(creds.ca_pem)
    device = MqttConnection("shim-car8", creds.broker_address(ca_file))
    device.start()
    app = _Client(secure.tls, secure.tls.port, "appliance", APPLIANCE_PASSWORD)
    try:
        assert device.connected.wait(10)
        assert app.connect_result() == "Success"
        assert pitbox_main(_devices(secure, "revoke", "car8-pc1")) == 0
        assert "revoked" in capsys.readouterr().out
        # Mosquitto re-checks logins on SIGHUP: the live connection is dropped,
        # and every reconnect is refused.
        assert wait_for(lambda: not device.connected.is_set(), 10)
        assert wait_for(lambda: device.refused is not None, 15)
        assert "Not authorized" in str(device.refused)
        # A message sealed with the revoked key (e.g. from its spool) is refused.
        message = next(ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0)).messages())
        payload = Codec(creds.message_key).encode("car8-pc1", 1, message)
        app.publish(topics.shim_data("car8-pc1").name, payload)
        core = secure.core
        assert wait_for(lambda: core.ingestor.stats.rejected["revoked_key"] == 1, 10)
        assert core.ingestor.stats.accepted == 0
    finally:
        device.stop()
        app.close()
    listing = pitbox_main(_devices(secure, "list", "--json"))
    rows = json.loads(capsys.readouterr().out)
    assert listing == 0
    assert [(r["source"], r["revoked_at"] is not None) for r in rows] == [
        ("car8-pc1", True)
    ]
    assert "message_key" not in rows[0]


def test_unknown_sources_and_wrong_keys_are_rejected_with_a_reason(
    secure: SecureAppliance, capsys: pytest.CaptureFixture[str]
) -> None:
    creds = pair(secure.api_url, _start_pairing(secure, "car2-pc1", capsys))
    messages = list(ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0)).messages())
    batch = next(m for m in messages if isinstance(m, TelemetryBatch))
    stranger = Codec(os.urandom(32))
    app = _Client(secure.tls, secure.tls.port, "appliance", APPLIANCE_PASSWORD)
    try:
        assert app.connect_result() == "Success"
        # Nobody paired as car4-pc1, and there is no legacy team key.
        app.publish(
            topics.shim_data("car4-pc1").name, stranger.encode("car4-pc1", 5, batch)
        )
        # car2-pc1 is paired, but this message is not sealed with its key.
        app.publish(
            topics.shim_data("car2-pc1").name, stranger.encode("car2-pc1", 5, batch)
        )
        # The device's own key works.
        good = Codec(creds.message_key)
        app.publish(
            topics.shim_data("car2-pc1").name, good.encode("car2-pc1", 6, messages[0])
        )
        stats = secure.core.ingestor.stats
        assert wait_for(lambda: stats.accepted == 1, 10)
        assert wait_for(lambda: stats.rejected == {"unknown_key": 1, "bad_auth": 1}, 10)
    finally:
        app.close()


def test_keyring_revocation_wins_over_the_legacy_key() -> None:
    team, own = os.urandom(32), os.urandom(32)
    keyring = Keyring(legacy_key=team)
    keyring.replace({"car1-pc1": own}, revoked={"car1-pc2"})
    codec = Codec(keyring)
    message = next(ShimPipeline(RaceSimulatorAdapter(laps=1, speed=0)).messages())
    # Legacy PCs still work with the team key; paired ones only with their own.
    assert codec.open(Codec(team).encode("car3-pc1", 1, message))[0] == "car3-pc1"
    assert codec.open(Codec(own).encode("car1-pc1", 1, message))[0] == "car1-pc1"
    with pytest.raises(DecodeError) as bad:
        codec.open(Codec(team).encode("car1-pc1", 2, message))
    assert bad.value.reason == "bad_auth"
    with pytest.raises(DecodeError) as revoked:
        codec.open(Codec(team).encode("car1-pc2", 1, message))
    assert revoked.value.reason == "revoked_key"
    # Commands to a device are sealed with its key; none can go to a revoked one.
    command = codec.encode("appliance", 1, message, key_of="car1-pc1")
    assert Codec(own).open(command)[0] == "appliance"
    with pytest.raises(ValueError, match="revoked"):
        codec.encode("appliance", 2, message, key_of="car1-pc2")
    with pytest.raises(DecodeError) as unknown:
        Codec(Keyring()).open(Codec(team).encode("car3-pc1", 1, message))
    assert unknown.value.reason == "unknown_key"


# ---- helpers ------------------------------------------------------------------------------
def _devices(secure: SecureAppliance, *args: str) -> list[str]:
    return ["devices", "--config", str(secure.config_path), *args]


def _start_pairing(
    secure: SecureAppliance, name: str, capsys: pytest.CaptureFixture[str]
) -> str:
    capsys.readouterr()
    assert pitbox_main(_devices(secure, "pair", "--name", name)) == 0
    out = capsys.readouterr().out
    return out.split("--code ", 1)[1].split()[0]


def _post(url: str, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, json.dumps(body).encode(), headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return json.load(reply)
    except urllib.error.HTTPError as exc:
        raise PairingError(f"({exc.code}) {exc.read().decode()}") from None


def _handshake(context: ssl.SSLContext, port: int) -> str:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return str(tls.version())


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class _Client:
    """A raw paho client (MQTT 3.1.1) with blocking helpers."""

    def __init__(
        self,
        tls_broker: TlsBroker,
        port: int,
        username: str | None = None,
        password: str | None = None,
        *,
        tls: bool = False,
    ) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(ca_certs=str(tls_broker.pki.ca_cert))
        self._result: queue.Queue[str] = queue.Queue()
        self._messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client.on_connect = lambda _c, _u, _f, rc, _p: self._result.put(str(rc))
        self.client.on_message = lambda _c, _u, m: self._messages.put(
            (m.topic, bytes(m.payload))
        )
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def connect_result(self) -> str:
        return self._result.get(timeout=10)

    def subscribe(self, pattern: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(pattern, 1)
        assert self._subscribed.wait(5)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(5)

    def received(self, count: int, timeout: float = 5.0) -> list[tuple[str, bytes]]:
        got: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.append(self._messages.get(timeout=0.1))
            except queue.Empty:
                continue
        while True:
            try:
                got.append(self._messages.get_nowait())
            except queue.Empty:
                return got

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _get(url: str, token: str = API_TOKEN) -> Any:
    """GET with a read token (every read of the API but health needs one)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.load(reply)


def test_the_engineer_pairs_and_revokes_through_the_api(
    secure: SecureAppliance,
) -> None:
    """What the /devices page does: a code from the API, the PC pairs, then is revoked."""
    api = f"{secure.api_url}/api/v1/devices"
    with pytest.raises(PairingError, match="401"):
        _post(f"{api}/pairings", {"source": "car12-pc1"})  # no token: refused
    made = _post(f"{api}/pairings", {"source": "car12-pc1"}, API_TOKEN)
    assert made["command"] == f"pitbox-shim pair --code {made['code']}"
    assert made["pair_uri"].startswith("pitbox://pair?api=http")
    listed = _get(api)
    assert [p["source"] for p in listed["pending"]] == ["car12-pc1"]
    assert "code" not in json.dumps(listed["pending"])  # shown once, when made
    creds = pair(secure.api_url, made["code"])
    with pytest.raises(PairingError, match="409"):  # paired now: revoke it first
        _post(f"{api}/pairings", {"source": "car12-pc1"}, API_TOKEN)
    listed = _get(api)
    assert listed["pending"] == []
    [device] = [d for d in listed["devices"] if d["source"] == "car12-pc1"]
    assert device["car"] == "car12"
    assert device["revoked_at"] is None
    assert device["device_id"] == creds.device_id
    assert "message_key" not in json.dumps(listed)
    revoked = _post(f"{api}/{device['device_id']}/revoke", {}, API_TOKEN)
    assert revoked["revoked_at"] is not None
    assert creds.source not in secure.registry.password_file.read_text()
    with pytest.raises(PairingError, match="404"):
        _post(f"{api}/{device['device_id']}/revoke", {}, API_TOKEN)
