"""Test helpers for network faults: a namespace joined by a veth pair, a broker on its host end."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from pitbox_appliance.broker import MosquittoBroker, free_port
from tests.conftest import (
    APPLIANCE_PASSWORD,
    APPLIANCE_USER,
    DRIVER_PASSWORD,
    DRIVER_USER,
    BrokerHandle,
    mosquitto_available,
)


@dataclass(frozen=True)
class Netns:
    """A network namespace joined to the host by a veth pair."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    def ip(self, *args: str, inside: bool = False) -> None:
        cmd = (
            ["ip", "netns", "exec", self.name, "ip", *args] if inside else ["ip", *args]
        )
        subprocess.run(cmd, check=True, capture_output=True, text=True)

    def exec_prefix(self) -> list[str]:
        """The command prefix that runs a program inside the namespace (same PID)."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Pull the cable: the namespace's end of the link goes down, silently."""
        self.ip("link", "set", self.ns_if, "down", inside=True)

    def restore(self) -> None:
        self.ip("link", "set", self.ns_if, "up", inside=True)


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


@contextmanager
def network_namespace() -> Iterator[Netns]:
    """A namespace at 10.213.N.2 with the host at 10.213.N.1; skips where not permitted."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root (CAP_NET_ADMIN) and iproute2")
    tag = secrets.token_hex(3)
    net = int(tag[:2], 16)
    ns = Netns(
        f"pbx{tag}", f"pbh{tag}", f"pbn{tag}", f"10.213.{net}.1", f"10.213.{net}.2"
    )
    made = _ip("netns", "add", ns.name)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    try:
        veth = _ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
        if veth.returncode != 0:
            pytest.skip(f"cannot create a veth pair: {veth.stderr.strip()}")
        ns.ip("link", "set", ns.ns_if, "netns", ns.name)
        ns.ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
        ns.ip("link", "set", ns.host_if, "up")
        ns.ip("addr", "add", f"{ns.ns_ip}/30", "dev", ns.ns_if, inside=True)
        ns.ip("link", "set", ns.ns_if, "up", inside=True)
        ns.ip("link", "set", "lo", "up", inside=True)
        yield ns
    finally:
        _ip("link", "del", ns.host_if)
        _ip("netns", "del", ns.name)


@contextmanager
def lan_broker(tmp_path: Path, ns: Netns) -> Iterator[BrokerHandle]:
    """A broker listening on the host's end of the veth pair only.

    The host reaches that address locally whatever the link does (the core and
    PCs on the host side); a program in the namespace reaches it over the veth.
    """
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    port = free_port()
    instance = MosquittoBroker(tmp_path / "mosquitto", port=port, bind=ns.host_ip)
    instance.add_user(APPLIANCE_USER, APPLIANCE_PASSWORD)
    instance.add_user(DRIVER_USER, DRIVER_PASSWORD)
    instance.write_config(appliance_user=APPLIANCE_USER)
    instance.start()
    try:
        yield BrokerHandle(broker=instance, host=ns.host_ip, port=port)
    finally:
        instance.stop()


def spool_depth(spool: Path) -> int:
    """Messages in a shim's spool file (0 when it is absent or not created yet)."""
    if not spool.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
