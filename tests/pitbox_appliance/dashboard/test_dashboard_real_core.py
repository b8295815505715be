"""The pit wall in a real browser fed by the real core: what it shows is what the core computed.

The other browser tests feed the dashboard hand-written live states. Here a simulated
race streams through a shim, Mosquitto and the real ``CoreService`` (segmentation,
strategy, storage), and the dashboard process subscribes to what that core publishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver_pc.adapters.simulator import RaceSimulatorAdapter
from pitbox_appliance.broker import free_port
from pitbox_appliance.dashboard import formatting as fmt
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.reader import SessionReader
from tests.conftest import REPO_ROOT, RunningAppliance, wait_for
from tests.pitbox_appliance.dashboard.conftest import add_logins, log_in

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium not installed at /usr/bin/chromium",
    ),
]


@pytest.fixture
def dashboard_url(appliance: RunningAppliance, tmp_path: Path) -> Iterator[str]:
    """``python -m pitbox_appliance.dashboard`` on the core's broker and database."""
    broker, port = appliance.broker, free_port()
    config = tmp_path / "dashboard.yaml"
    config.write_text(
        f"""version: 1
mqtt:
  host: {broker.host}
  port: {broker.port}
  username: {broker.appliance_user}
core:
  db_url: {appliance.db_url}
  api_port: {free_port()}
dashboard:
  host: 127.0.0.1
  port: {port}
security:
  dir: {tmp_path / "security"}
"""
    )
    add_logins(tmp_path / "security")
    env = {**os.environ, "PITBOX_MQTT_PASSWORD": broker.appliance_password}
    env.pop("PYTEST_CURRENT_TEST", None)
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pitbox_appliance.dashboard",
                "--config",
                str(config),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        if not wait_for(lambda: _answers(url) or process.poll() is not None, 30):
            pytest.fail(f"dashboard did not answer\n{log.read_text()[-3000:]}")
        if process.poll() is not None:
            pytest.fail(f"dashboard exited\n{log.read_text()[-3000:]}")
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert "Traceback" not in log.read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def test_the_pit_wall_shows_what_the_real_core_computed(
    appliance: RunningAppliance, dashboard_url: str
) -> None:
    from playwright.sync_api import expect, sync_playwright

    core = appliance.core
    appliance.start_shim(RaceSimulatorAdapter(laps=4, speed=25.0, seed=21, opponents=5))
    _shim, thread, _stop = appliance.shims[0]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            log_in(page, dashboard_url)
            assert wait_for(lambda: "car1" in core.ingestor.live, 30)
            # The race is over: the core's last state is final; the page must match it.
            thread.join(120)
            assert not thread.is_alive(), "the shim did not finish its race"
            assert wait_for(lambda: core.health()["queue"] == 0, 20)
            live = core.ingestor.live["car1"]
            assert live.laps_completed >= 3
            # The shim's own last report, relayed by the core.
            expect(page.get_by_test_id("shim")).to_have_text("STOPPED", timeout=10_000)
            expect(page.get_by_test_id("driver")).to_contain_text(
                live.driver, timeout=10_000
            )
            expect(page.get_by_test_id("best")).to_have_text(
                fmt.lap_time(live.best_lap_time), timeout=10_000
            )
            table = page.get_by_test_id("laps")
            for row in live.recent_laps:
                expect(table).to_contain_text(fmt.lap_time(row.time))
            # The laps page reads the same laps back from the core's database.
            engine = make_engine(appliance.db_url, readonly=True)
            try:
                reader = SessionReader(engine)
                # Lap 0 (start to the first crossing of the line) is stored, not counted.
                stored = [
                    lap for lap in reader.laps(live.session_id) if lap.lap_number >= 1
                ]
            finally:
                engine.dispose()
            assert len(stored) == live.laps_completed
            page.goto(dashboard_url + "laps")
            lap_page = page.get_by_test_id("page-laps")
            expect(lap_page).to_be_visible(timeout=10_000)
            best = min(lap.lap_time for lap in stored if lap.lap_time is not None)
            expect(lap_page).to_contain_text(fmt.lap_time(best), timeout=10_000)
            assert errors == []
        finally:
            browser.close()
