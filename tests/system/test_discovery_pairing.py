"""A new driver PC on the team LAN finds the appliance by mDNS, pairs with only the code, streams.

Three network namespaces this test creates: the appliance's, a driver PC's, and a
bridge joining them (the LAN). Multicast never leaves them.
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT, mosquitto_available, stored_counts, wait_for

APPLIANCE_PASSWORD = "lan-appliance-pw-7c21"

pytestmark = pytest.mark.timeout(240)


@dataclass(frozen=True)
class Lan:
    """Two namespaces on one bridge: the appliance at ``.1``, a driver PC at ``.2``."""

    appliance: str
    pc: str
    bridge: str
    appliance_ip: str
    pc_ip: str

    def run_in(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@contextmanager
def lan() -> Iterator[Lan]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN) and iproute2")
    tag = secrets.token_hex(3)
    net = 100 + int(tag[:2], 16) % 100
    net_ = Lan(
        f"pbA{tag}", f"pbB{tag}", f"pbL{tag}", f"10.214.{net}.1", f"10.214.{net}.2"
    )
    made = subprocess.run(
        ["ip", "netns", "add", net_.bridge], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        _ip("netns", "add", net_.appliance)
        _ip("netns", "add", net_.pc)
        _ip("-n", net_.bridge, "link", "add", "br0", "type", "bridge")
        _ip("-n", net_.bridge, "link", "set", "br0", "up")
        ends = (("va", net_.appliance, net_.appliance_ip), ("vb", net_.pc, net_.pc_ip))
        for port, ns, address in ends:
            _ip(
                "-n",
                net_.bridge,
                "link",
                "add",
                port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            _ip("-n", net_.bridge, "link", "set", port, "master", "br0")
            _ip("-n", net_.bridge, "link", "set", port, "up")
            _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            # mDNS: multicast goes out on the LAN link (there is no default route).
            _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
        yield net_
    finally:
        for ns in (net_.appliance, net_.pc, net_.bridge):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _config(tmp: Path) -> Path:
    path = tmp / "appliance.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mqtt": {"host": "127.0.0.1", "port": 1883, "username": "appliance"},
                "core": {
                    "db_url": f"sqlite:///{tmp / 'pitbox.sqlite3'}",
                    "api_host": "0.0.0.0",
                    "api_port": 8081,
                    "advertise_name": "PitBox pit-lan",
                },
                "security": {
                    "dir": str(tmp / "security"),
                    "broker_run_dir": str(tmp / "broker"),
                    "tls_port": 8883,
                    "legacy_team_key": False,
                },
            }
        )
    )
    return path


def _pc(net: Lan, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*net.run_in(net.pc), sys.executable, "-m", "driver_pc", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=REPO_ROOT,
    )


def test_a_pc_with_no_configuration_finds_pairs_and_streams(tmp_path: Path) -> None:
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    config = _config(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PITBOX_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    pc_env = {**env, "HOME": str(tmp_path / "pc-home")}  # nothing configured there
    with lan() as net:
        appliance = subprocess.Popen(
            [
                *net.run_in(net.appliance),
                sys.executable,
                "-m",
                "tests.system.lan_appliance",
                "--config",
                str(config),
                "--address",
                net.appliance_ip,
            ],
            stdout=subprocess.PIPE,
            stderr=(tmp_path / "appliance.log").open("wb"),
            text=True,
            env={**env, "PITBOX_MQTT_PASSWORD": APPLIANCE_PASSWORD},
            cwd=REPO_ROOT,
        )
        try:
            assert appliance.stdout is not None
            ready, _, _ = select.select([appliance.stdout], [], [], 60)
            line = appliance.stdout.readline() if ready else ""
            assert line.startswith("READY"), (tmp_path / "appliance.log").read_text()
            # The engineer starts a pairing on the appliance; the code is all the PC gets.
            made = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pitbox_appliance.cli",
                    "devices",
                    "--config",
                    str(config),
                    "pair",
                    "--name",
                    "car1-pc1",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                env=env,
                cwd=REPO_ROOT,
            )
            code = made.stdout.split("--code ", 1)[1].split()[0]
            paired = _pc(net, "pair", "--code", code, env=pc_env)
            assert paired.returncode == 0, paired.stderr
            assert (
                # HTTPS: the appliance has its CA (docs/remote.md).
                f"found PitBox pit-lan at https://{net.appliance_ip}:8081"
                in paired.stdout
            )
            assert "paired as car1-pc1" in paired.stdout
            streamed = _pc(
                net, "--adapter", "simulator", "--laps", "2", "--speed", "0", env=pc_env
            )
            assert streamed.returncode == 0, streamed.stderr
            db = tmp_path / "pitbox.sqlite3"
            assert wait_for(lambda: len(stored_counts(db)[2]) >= 2, 30), stored_counts(
                db
            )
        finally:
            appliance.terminate()
            try:
                appliance.wait(30)
            except subprocess.TimeoutExpired:
                appliance.kill()
                appliance.wait(10)
        # With no appliance on the LAN the PC says so, naming the way out.
        alone = _pc(net, "pair", "--code", "AAAA-BBBB", "--browse-s", "1", env=pc_env)
        assert alone.returncode == 1
        assert "no PitBox appliance answered" in alone.stderr
        assert "--appliance" in alone.stderr
