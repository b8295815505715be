"""Remote driver PCs: the public name in the broker certificate, the pairing answer, the bridge config."""

from __future__ import annotations

import base64
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from driver_pc.pairing import DeviceCredentials
from pitbox_appliance.broker import BridgeConfig, MosquittoBroker, free_port
from pitbox_appliance.cli import main as pitbox_main
from pitbox_appliance.security.pki import (
    PkiFiles,
    ensure_pki,
    ensure_web_cert,
    issue_cert,
    server_cert_names,
    spki_sha256,
)
from pitbox_appliance.security.remote import BRIDGE_USER, write_cloud_broker
from tests.conftest import mosquitto_available


def test_public_name_in_the_certificate_and_a_change_reissues_it(
    tmp_path: Path,
) -> None:
    pki = ensure_pki(tmp_path, ["pitbox.local", "192.168.1.20", "pitbox.example.org"])
    assert server_cert_names(pki) == sorted(
        ["pitbox.local", "192.168.1.20", "pitbox.example.org"]
    )
    first = pki.server_cert.read_bytes()
    assert ensure_pki(tmp_path, ["pitbox.local", "192.168.1.20", "pitbox.example.org"])
    assert pki.server_cert.read_bytes() == first  # same names: kept
    ensure_pki(tmp_path, ["pitbox.local", "192.168.1.20", "203.0.113.7"])
    assert pki.server_cert.read_bytes() != first
    assert "203.0.113.7" in server_cert_names(pki)
    assert "pitbox.example.org" not in server_cert_names(pki)
    # Verifies for the public address against the appliance CA (as a shim does).
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)


def test_devices_setup_puts_security_public_host_in_the_certificate(
    tmp_path: Path,
) -> None:
    config = tmp_path / "appliance.yaml"
    config.write_text(
        f"security:\n  dir: {tmp_path / 'sec'}\n  broker_run_dir: {tmp_path / 'b'}\n"
        "  public_host: race.example.net\n"
    )
    assert pitbox_main(["devices", "--config", str(config), "setup"]) == 0
    assert "race.example.net" in server_cert_names(PkiFiles(tmp_path / "sec"))
    config.write_text(config.read_text().replace("race.example.net", "198.51.100.4"))
    assert pitbox_main(["devices", "--config", str(config), "setup"]) == 0
    names = server_cert_names(PkiFiles(tmp_path / "sec"))
    assert "198.51.100.4" in names
    assert "race.example.net" not in names


def test_credentials_carry_the_public_host_as_the_fallback(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["127.0.0.1"])
    data = {
        "device_id": "ab12cd34",
        "source": "car42-pc1",
        "mqtt_host": "192.168.1.20",
        "mqtt_port": 8883,
        "mqtt_username": "car42-pc1",
        "mqtt_password": "pw",
        "message_key": "11" * 32,
        "ca_pem": pki.ca_cert.read_text(),
        "mqtt_public_host": "pitbox.example.org",
    }
    creds = DeviceCredentials.from_json(data)
    assert DeviceCredentials.from_json(creds.to_json()) == creds
    address = creds.broker_address(tmp_path / "ca.crt")
    assert address.hosts == ("192.168.1.20", "pitbox.example.org")  # LAN first
    # Credentials from before remote access: LAN only, and still readable.
    del data["mqtt_public_host"]
    old = DeviceCredentials.from_json(data)
    assert old.mqtt_public_host is None
    assert "mqtt_public_host" not in old.to_json()
    assert old.broker_address(tmp_path / "ca.crt").hosts == ("192.168.1.20",)


def test_bridge_renders_tls_and_only_the_pitbox_shim_topics(tmp_path: Path) -> None:
    bridge = BridgeConfig(
        "cloud.example.net", 8883, "pitbox-bridge", "s3cret", "/c.crt"
    )
    text = bridge.render()
    topics = [line for line in text.splitlines() if line.startswith("topic ")]
    assert topics == [
        "topic pitbox/v1/shim/+/data in 1",
        "topic pitbox/v1/shim/+/cmd out 1",
        "topic pitbox/v1/shim/+/ack out 1",
    ]
    for line in (
        "address cloud.example.net:8883",
        "bridge_cafile /c.crt",
        "bridge_insecure false",
        "cleansession false",
        "remote_username pitbox-bridge",
    ):
        assert line in text.splitlines()
    assert "s3cret" not in repr(bridge)
    # Stored beside the broker: write_config renders it at the end of the conf.
    broker = MosquittoBroker(tmp_path / "b", port=free_port())
    broker.run_dir.mkdir()
    (broker.run_dir / "passwd").write_text("")
    assert "\nconnection " not in broker.write_config("appliance").read_text()
    broker.bridge_file.write_text(json.dumps(bridge.to_json()))
    conf = broker.write_config("appliance").read_text()
    assert conf.rstrip().endswith("topic pitbox/v1/shim/+/ack out 1")
    assert BridgeConfig.load(broker.bridge_file) == bridge


@pytest.mark.parametrize(
    "change",
    [
        {"host": "cloud example"},
        {"host": "a/b"},
        {"password": "two\nlines"},
        {"port": 0},
        {"client_id": "has space"},
        {"username": ""},
    ],
)
def test_bridge_refuses_values_that_would_break_the_conf(
    change: dict[str, object],
) -> None:
    values: dict[str, object] = {
        "host": "cloud.example.net",
        "port": 8883,
        "username": "u",
        "password": "p",
        "ca_file": "/c.crt",
        **change,
    }
    with pytest.raises(ValueError, match="bridge"):
        BridgeConfig(**values)  # type: ignore[arg-type]


def test_cloud_broker_files_copy_device_logins_only(tmp_path: Path) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    pki = ensure_pki(tmp_path / "sec", ["127.0.0.1"])
    appliance = MosquittoBroker(tmp_path / "app", port=free_port())
    appliance.add_user("appliance", "a")
    appliance.add_user("car42-pc1", "d")
    appliance.write_config("appliance")  # adds pitbox-core & co.
    conf = write_cloud_broker(
        tmp_path / "cloud", pki, "cloud.example.net", 8883, appliance.password_file, "b"
    )
    users = {
        line.split(":")[0]
        for line in (tmp_path / "cloud" / "passwd").read_text().splitlines()
    }
    assert users == {"car42-pc1", BRIDGE_USER}
    acl = (tmp_path / "cloud" / "mosquitto.acl").read_text()
    assert "topic read pitbox/v1/shim/+/data" in acl
    assert "topic write pitbox/v1/shim/+/cmd" in acl
    assert "pattern write pitbox/v1/shim/%u/data" in acl
    assert "pitbox/v1/#" not in acl
    assert f"certfile {tmp_path / 'cloud' / 'cloud.crt'}" in conf.read_text()
    # The cloud certificate is the appliance CA's, for the cloud's name.
    cert = x509.load_pem_x509_certificate(
        (tmp_path / "cloud" / "cloud.crt").read_bytes()
    )
    cert.verify_directly_issued_by(
        x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["cloud.example.net"]


def test_issue_cert_needs_a_name(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["127.0.0.1"])
    with pytest.raises(ValueError, match="at least one name"):
        issue_cert(pki, [], tmp_path / "x.crt", tmp_path / "x.key")


def test_pitbox_remote_cloud_broker_status_and_bridge_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    config = tmp_path / "appliance.yaml"
    config.write_text(
        f"security:\n  dir: {tmp_path / 'sec'}\n  broker_run_dir: {tmp_path / 'b'}\n"
        "  public_host: cloud.example.net\n"
    )
    assert pitbox_main(["devices", "--config", str(config), "setup"]) == 0
    broker = MosquittoBroker(tmp_path / "b", port=free_port())
    broker.add_user("appliance", "a")
    broker.add_user("car42-pc1", "d")
    broker.write_config("appliance")
    out = tmp_path / "cloud"
    args = ["remote", "--config", str(config)]
    with pytest.raises(SystemExit, match="2"):  # argparse: --out is required
        pitbox_main([*args, "cloud-broker", "--host", "cloud.example.net"])
    capsys.readouterr()
    assert (
        pitbox_main(
            [*args, "cloud-broker", "--host", "cloud.example.net", "--out", str(out)]
        )
        == 0
    )
    said = capsys.readouterr().out
    assert "devices: car42-pc1" in said
    conf = broker.config_file.read_text()
    assert "address cloud.example.net:8883" in conf
    assert oct(broker.bridge_file.stat().st_mode & 0o777) == "0o600"
    assert pitbox_main([*args, "status"]) == 0
    status = capsys.readouterr().out
    assert "bridge: cloud.example.net:8883 as pitbox-bridge" in status
    assert "cloud.example.net" in status.splitlines()[1]  # in the certificate
    assert BridgeConfig.load(broker.bridge_file) is not None
    assert "remote_password" not in status
    assert pitbox_main([*args, "bridge", "--off"]) == 0
    assert not broker.bridge_file.exists()
    assert "\nconnection " not in broker.config_file.read_text()


def test_web_certificate_kept_reissued_on_new_names_and_pinned(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["127.0.0.1"])
    cert, key = ensure_web_cert(pki, ["127.0.0.1", "10.0.0.5", "pitbox.local"])
    first = cert.read_bytes()
    pin = spki_sha256(cert)
    assert len(base64.b64decode(pin)) == 32
    assert ensure_web_cert(pki, ["pitbox.local", "10.0.0.5", "127.0.0.1"]) == (
        cert,
        key,
    )
    assert cert.read_bytes() == first  # same names: kept
    ensure_web_cert(pki, ["127.0.0.1", "10.0.0.6"])
    assert cert.read_bytes() != first
    assert spki_sha256(cert) != pin  # a new key, so the kiosk fetches a new pin
    # Loads as a server certificate chain (what the API and uvicorn do).
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
