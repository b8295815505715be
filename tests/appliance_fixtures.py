"""Fixtures that run the real appliance core and real shims against a real broker."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from driver_pc.adapters.base import SimAdapter
from driver_pc.service import ShimConfig, ShimService
from driver_pc.transport.mqtt import BrokerAddress
from pitbox_appliance.config import ApplianceConfig, CoreConfig, MqttConfig
from pitbox_appliance.core.service import CoreService
from tests.broker_fixtures import BrokerHandle


@dataclass
class RunningAppliance:
    """A core service on a real broker, and how to start shims against it."""

    broker: BrokerHandle
    core: CoreService
    team_key: bytes
    db_url: str
    tmp: Path
    shims: list[tuple[ShimService, threading.Thread, threading.Event]] = field(
        default_factory=list
    )

    def start_shim(self, adapter: SimAdapter, source: str | None = None) -> ShimService:
        source = source or self.broker.driver_user
        config = ShimConfig(
            source=source,
            broker=BrokerAddress(
                self.broker.host,
                self.broker.port,
                self.broker.driver_user,
                self.broker.driver_password,
            ),
            team_key=self.team_key,
            spool_path=str(self.tmp / f"{source}.spool"),
        )
        shim = ShimService(config, adapter)
        stop = threading.Event()
        thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
        thread.start()
        self.shims.append((shim, thread, stop))
        return shim


def wait_for(
    condition: Callable[[], bool], timeout: float = 30.0, step: float = 0.05
) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


@pytest.fixture
def appliance(
    broker: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningAppliance]:
    key = os.urandom(32)
    monkeypatch.setenv("PITBOX_MQTT_PASSWORD", broker.appliance_password)
    db_url = f"sqlite:///{tmp_path / 'appliance.sqlite3'}"
    config = ApplianceConfig(
        mqtt=MqttConfig(
            host=broker.host, port=broker.port, username=broker.appliance_user
        ),
        core=CoreConfig(db_url=db_url),
    )
    core = CoreService(config, key)
    core.start()
    assert core.connection.connected.wait(10), "core could not connect to the broker"
    running = RunningAppliance(broker, core, key, db_url, tmp_path)
    yield running
    for _shim, thread, stop in running.shims:
        stop.set()
        thread.join(timeout=15)
    core.stop()
