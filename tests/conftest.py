"""Fixtures every level shares: real recorded data, simulator-written .ibt files, a real broker, a running appliance."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine

from driver_pc.adapters.base import SimAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.messages import TelemetryBatch
from driver_pc.protocol.mqtt import BrokerAddress
from driver_pc.service import ShimConfig, ShimService
from pitbox_appliance.broker import MosquittoBroker, free_port
from pitbox_appliance.config import ApplianceConfig, CoreConfig, MqttConfig
from pitbox_appliance.core.service import CoreService

# The repository's root (tests live at several depths below it).
REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = Path(
    os.environ.get(
        "PITBOX_REAL_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
    )
)
IBT_DIR = REAL_DATA / "iracing" / "ibt"


def real_file(*parts: str) -> Path:
    """Path of a recorded file under ../shared/data, skipping the test if it is absent."""
    path = REAL_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"real recorded data not present: {path} (see ../shared/data/README.md)"
        )
    return path


@pytest.fixture(scope="session")
def sim_ibt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An .ibt file written by our own simulator: 6 laps, Martinsville paperclip."""
    from driver_pc.adapters.simulator import write_simulated_ibt

    return write_simulated_ibt(
        tmp_path_factory.mktemp("sim") / "sim.ibt", laps=6, seed=7
    )


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
        shim = driver_shim(
            self.broker, self.team_key, self.tmp / f"{source}.spool", adapter, source
        )
        stop = threading.Event()
        thread = threading.Thread(target=shim.run, args=(stop,), daemon=True)
        thread.start()
        self.shims.append((shim, thread, stop))
        return shim


def driver_shim(
    broker: BrokerHandle,
    key: bytes,
    spool: Path,
    adapter: SimAdapter,
    source: str | None = None,
) -> ShimService:
    """A shim on the broker's driver credentials (not started)."""
    return ShimService(
        ShimConfig(
            source=source or broker.driver_user,
            broker=BrokerAddress(
                broker.host, broker.port, broker.driver_user, broker.driver_password
            ),
            team_key=key,
            spool_path=str(spool),
        ),
        adapter,
    )


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


# ---- helpers for tests that run the core as its own process (tests/system/test_fault*.py) ----


def core_config_file(
    tmp_path: Path, broker: BrokerHandle, db: Path, **core: object
) -> Path:
    """An appliance config file pointing a core process at ``broker`` and ``db``."""
    path = tmp_path / "appliance.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": broker.appliance_user,
                },
                "core": {"db_url": f"sqlite:///{db}", "api_port": free_port(), **core},
            }
        )
    )
    return path


def start_core_process(
    config: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``python -m pitbox_appliance.core`` with its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pitbox_appliance.core", "--config", str(config)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def stored_counts(db: Path) -> tuple[int, int, list[int]]:
    """(telemetry chunks, distinct (source, seq) among them, lap numbers in order)."""
    if not db.exists():
        return 0, 0, []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            chunks, distinct = conn.execute(
                "SELECT COUNT(*), COUNT(DISTINCT source || ':' || seq)"
                " FROM telemetry_chunks"
            ).fetchone()
            laps = [n for (n,) in conn.execute("SELECT lap_number FROM laps")]
    except sqlite3.OperationalError:
        return 0, 0, []  # schema not created yet, or the file is being replaced
    return int(chunks), int(distinct), sorted(laps)


def expected_batches(adapter: SimAdapter) -> int:
    """How many telemetry batches the shim pipeline makes of ``adapter``'s session."""
    return sum(isinstance(m, TelemetryBatch) for m in ShimPipeline(adapter).messages())


def import_into(db_url: str, path: Path) -> None:
    """Import a .ibt file the way `pitbox import` does."""
    from pitbox_appliance.cli.importer import import_file, local_codec
    from pitbox_appliance.core.ingest import Ingestor
    from pitbox_appliance.storage.database import open_database
    from pitbox_appliance.storage.writer import SessionWriter

    engine = open_database(db_url)
    writer = SessionWriter(engine)
    codec = local_codec()
    import_file(path, Ingestor(codec, writer), codec)
    writer.close()
    engine.dispose()


def readonly_engine(db_url: str) -> Engine:
    from pitbox_appliance.storage.database import make_engine

    return make_engine(db_url, readonly=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the threads still alive at the end: a test that leaks one slows the rest."""
    names = sorted(
        t.name for t in threading.enumerate() if t is not threading.main_thread()
    )
    terminalreporter.write_line(
        f"threads alive at the end of the run: {len(names)} {names[:40]}"
    )
