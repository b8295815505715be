"""/drivers in a real browser on the real core and API: drivers from stored laps, mark a practice as training, goals and plan shown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from driver_pc.pipeline import ShimPipeline
from driver_pc.protocol.codec import Codec
from pitbox_appliance.api.app import bound_port, start_api
from pitbox_appliance.broker import free_port
from pitbox_appliance.coaching.live import BOARD
from pitbox_appliance.config import (
    ApplianceConfig,
    CoreConfig,
    MqttConfig,
    SecurityConfig,
)
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.users import USERS_FILE, UserStore
from tests.conftest import REPO_ROOT, BrokerHandle, wait_for

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "engineer-token-0123456789"
LOGIN = ("eng", "engineer", "engineer-pass-1")

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium not installed at /usr/bin/chromium",
    ),
]


@pytest.fixture
def core_with_laps(
    broker: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CoreService, str]]:
    """The real core and API with two stored practice sessions (Alex, then Bea)."""
    BOARD.reset()
    monkeypatch.setenv("PITBOX_MQTT_PASSWORD", broker.appliance_password)
    monkeypatch.setenv("PITBOX_API_TOKENS", f"{TOKEN}:read+commands")
    key = os.urandom(32)
    config = ApplianceConfig(
        mqtt=MqttConfig(
            host=broker.host, port=broker.port, username=broker.appliance_user
        ),
        core=CoreConfig(db_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", api_port=0),
        security=SecurityConfig(
            dir=str(tmp_path / "security"), broker_run_dir=str(broker.run_dir)
        ),
    )
    core = CoreService(config, key)
    core.start()
    codec = Codec(key)
    seq = 1
    for driver, seed in (("Alex Sim", 3), ("Bea Sim", 4)):
        sim = RaceSimulatorAdapter(
            laps=6, speed=0, seed=seed, drivers=(driver,), session_key=f"s-{seed}"
        )
        for message in ShimPipeline(sim).messages():
            assert core.ingest_frame(codec.encode("car42-pc1", seq, message)).stored
            seq += 1
    loop = asyncio.new_event_loop()
    runner = loop.run_until_complete(start_api(core))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield core, f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        core.stop()
        BOARD.reset()


def _dashboard(
    tmp_path: Path, broker: BrokerHandle, api_url: str
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    config = tmp_path / "dashboard.yaml"
    security = tmp_path / "security"
    config.write_text(
        yaml.safe_dump(
            {
                "mqtt": {
                    "host": broker.host,
                    "port": broker.port,
                    "username": broker.appliance_user,
                },
                "core": {
                    "db_url": f"sqlite:///{tmp_path / 'a.sqlite3'}",
                    "api_port": int(api_url.rsplit(":", 1)[1]),
                },
                "dashboard": {"host": "127.0.0.1", "port": port},
                "security": {"dir": str(security)},
            }
        )
    )
    UserStore(security / USERS_FILE).add(LOGIN[0], LOGIN[1], LOGIN[2], replace=True)
    env = {
        **os.environ,
        "PITBOX_MQTT_PASSWORD": broker.appliance_password,
        "PITBOX_API_TOKENS": f"{TOKEN}:read+commands",
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    log = (tmp_path / "dashboard.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "pitbox_appliance.dashboard", "--config", str(config)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{base}login", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    assert wait_for(answers, 30), (tmp_path / "dashboard.log").read_text()[-3000:]
    return base, process


def test_mark_a_practice_as_training_from_the_pit_wall(
    core_with_laps: tuple[CoreService, str],
    broker: BrokerHandle,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    core, api_url = core_with_laps
    base, process = _dashboard(tmp_path, broker, api_url)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
            )
            try:
                page = browser.new_page(viewport={"width": 800, "height": 480})
                page.goto(f"{base}login")
                page.get_by_test_id("login-name").fill(LOGIN[0])
                page.get_by_test_id("login-password").fill(LOGIN[2])
                page.get_by_test_id("login-submit").click()
                expect(page.get_by_test_id("user")).to_contain_text(
                    LOGIN[0], timeout=15_000
                )
                page.goto(f"{base}drivers")
                table = page.get_by_test_id("drv-table")
                expect(table).to_contain_text("Alex Sim", timeout=15_000)
                expect(table).to_contain_text("Bea Sim")
                expect(page.get_by_test_id("drv-profile")).to_contain_text(
                    "No training goals yet"
                )
                # Pick Bea and the latest session (hers), then start training.
                page.get_by_test_id("drv-pick").click()
                page.get_by_role("option", name="Bea Sim").click()
                page.get_by_test_id("drv-start").click()
                status = page.get_by_test_id("drv-status")
                expect(status).to_contain_text("against Alex Sim", timeout=60_000)
                expect(page.get_by_test_id("drv-plan")).to_contain_text(
                    "reference lap: Alex Sim", timeout=10_000
                )
                assert page.evaluate("document.documentElement.scrollWidth") <= 800
                goals = page.get_by_test_id("drv-goal")
                exercises = page.get_by_test_id("drv-exercise")
                expect(page.get_by_test_id("drv-stop")).to_contain_text(
                    "stop when fatigue passes"
                )
                shown_goals, shown_exercises = goals.count(), exercises.count()
            finally:
                browser.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    # What the page showed is what the core stored and put on the live board.
    plan = BOARD.plan_for("car42")
    assert plan is not None
    assert plan.driver == "Bea Sim"
    assert shown_goals == len(plan.goals)
    assert shown_exercises == len(plan.goals)
    assert core.session_of("car42") == plan.session_id
