"""Pytest fixtures that run a real, provisioned Mosquitto broker per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pitbox_appliance.broker import MosquittoBroker, free_port

APPLIANCE_USER = "appliance"
APPLIANCE_PASSWORD = "appliance-secret"
DRIVER_USER = "car1-pc1"
DRIVER_PASSWORD = "pc1-secret"


@dataclass(frozen=True, slots=True)
class BrokerHandle:
    """A running test broker and the credentials provisioned on it."""

    broker: MosquittoBroker
    host: str
    port: int
    appliance_user: str = APPLIANCE_USER
    appliance_password: str = APPLIANCE_PASSWORD
    driver_user: str = DRIVER_USER
    driver_password: str = DRIVER_PASSWORD

    @property
    def run_dir(self) -> Path:
        return self.broker.run_dir


def mosquitto_available() -> bool:
    """Whether the mosquitto binaries can be found (Debian puts them in /usr/sbin)."""
    return all(
        shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        for name in ("mosquitto", "mosquitto_passwd")
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerHandle]:
    """A Mosquitto broker on a free port with users appliance and car1-pc1."""
    if not mosquitto_available():
        pytest.skip("mosquitto not installed (apt-get install mosquitto)")
    port = free_port()
    instance = MosquittoBroker(tmp_path / "mosquitto", port=port)
    instance.add_user(APPLIANCE_USER, APPLIANCE_PASSWORD)
    instance.add_user(DRIVER_USER, DRIVER_PASSWORD)
    instance.write_config(appliance_user=APPLIANCE_USER)
    instance.start()
    try:
        yield BrokerHandle(broker=instance, host=instance.host, port=port)
    finally:
        instance.stop()
