"""The map, heatmap and racing line without GPS in a real headless Chromium, on the 7" touchscreen sizes.

The real Martinsville recording is imported through ``pitbox import`` with its
Lat/Lon left out (as live iRacing telemetry is), so every outline on the pages comes
from the live channels.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pitbox_appliance.broker import free_port
from pitbox_appliance.cli import main as pitbox
from pitbox_appliance.storage.database import make_engine
from pitbox_appliance.storage.writer import SessionWriter
from tests.conftest import REPO_ROOT, BrokerHandle, real_file
from tests.pitbox_appliance.dashboard.conftest import add_logins, log_in, mistake
from tests.pitbox_appliance.dashboard.test_dashboard_browser import (
    CHROMIUM,
    STOP_TIMEOUT_S,
    Dashboard,
    ImportedDb,
    _check_layout,
    _open,
    _wait_for_http,
)
from tests.pitbox_appliance.dashboard.test_track_outline_live import (
    MARTINSVILLE,
    without_gps,
)

ARTIFACTS = REPO_ROOT / "test-artifacts"
#: The 7" touchscreens of the brief.
SCREENS = ((1024, 600), (1280, 800))

pytestmark = [
    pytest.mark.timeout(150),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium not installed at /usr/bin/chromium",
    ),
]


@pytest.fixture
def dashboard(broker: BrokerHandle, tmp_path: Path) -> Iterator[Dashboard]:
    """The dashboard process on a database holding Martinsville without GPS."""
    ibt = without_gps(real_file(*MARTINSVILLE), tmp_path / "martinsville_no_gps.ibt")
    url = f"sqlite:///{tmp_path / 'pitbox.sqlite3'}"
    assert pitbox(["import", "--quiet", str(ibt), "--db", url]) == 0
    key = _add_mistakes(url)
    port = free_port()
    config = tmp_path / "appliance.yaml"
    config.write_text(
        f"""version: 1
mqtt:
  host: {broker.host}
  port: {broker.port}
  username: {broker.appliance_user}
core:
  db_url: {url}
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
    handle = Dashboard(
        process, f"http://127.0.0.1:{port}/", log, ImportedDb(url, tmp_path, key, key)
    )
    try:
        _wait_for_http(handle)
        yield handle
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)


def _add_mistakes(url: str) -> str:
    """Mistakes in both hairpins' zones, as the core's detectors store them."""
    engine = make_engine(url)
    with engine.connect() as conn:
        key = str(conn.exec_driver_sql("SELECT session_key FROM sessions").scalar())
    writer = SessionWriter(engine)
    sid = writer.session_id(key)
    for n, pct in enumerate((0.2, 0.24, 0.3, 0.7)):
        writer.add_event(sid, "mistake", 5.0 + n, mistake("braking", pct, 2, 0.5, "A"))
    writer.commit()
    writer.close()
    engine.dispose()
    return key


def test_map_heatmap_and_racing_line_without_gps(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run"],
        )
        try:
            width, height = SCREENS[0]
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            log_in(page, dashboard.url)

            _open(page, "map")
            expect(page.get_by_test_id("map-outline")).to_contain_text(
                "live channels", timeout=20_000
            )
            expect(page.get_by_test_id("map-corner-1")).to_have_text("T1")
            expect(page.get_by_test_id("map-corner-2")).to_have_text("T2")
            page.screenshot(path=str(ARTIFACTS / "map-no-gps-1024x600.png"))

            _open(page, "heatmap")
            table = page.get_by_test_id("heat-table")
            expect(table).to_contain_text("CORNER", timeout=10_000)
            # Three mistakes in the first hairpin's zone, one in the second's.
            expect(page.get_by_test_id("heat-row-1")).to_contain_text("T1 Turns 1-2")
            expect(page.get_by_test_id("heat-row-1")).to_contain_text("3")
            expect(page.get_by_test_id("heat-row-2")).to_contain_text("T2 Turns 3-4")
            page.screenshot(path=str(ARTIFACTS / "heatmap-no-gps-1024x600.png"))

            _open(page, "line")
            expect(page.get_by_test_id("line-note")).to_contain_text(
                "speed and yaw", timeout=20_000
            )
            expect(page.get_by_test_id("line-note")).not_to_contain_text("kept from")
            segments = page.locator("[data-testid=line-a] path")
            expect(segments.first).to_be_attached()
            assert segments.count() >= 4  # coloured by speed: several colours
            expect(page.get_by_test_id("line-corner-1")).to_have_text("T1")
            page.screenshot(path=str(ARTIFACTS / "line-speed-1024x600.png"))

            # Lap B: the other clean lap, overlaid, with the delta by corner.
            expect(page.get_by_test_id("line-lap-a")).to_contain_text("L32 19.301")
            page.get_by_test_id("line-lap-b").click()
            page.locator(".q-menu .q-item", has_text="L33 19.5").click()
            expect(page.get_by_test_id("line-b")).to_be_attached(timeout=10_000)
            # iRacing timed lap 33 at 19.546 s, lap 32 at 19.301 s.
            expect(page.get_by_test_id("line-delta")).to_contain_text("B − A +0.2")
            rows = page.get_by_test_id("line-corner-row")
            expect(rows).to_have_count(2)
            expect(rows.first).to_contain_text("T1 Turns 1-2")
            page.get_by_test_id("line-mode").get_by_text("Pedals").click()
            expect(page.get_by_test_id("line-legend")).to_contain_text("brake")
            colours = _stroke_colours(page)
            assert any(c.startswith("rgba(239") for c in colours), colours  # brake
            assert any(c.startswith("rgba(34") for c in colours), colours  # throttle
            page.screenshot(path=str(ARTIFACTS / "line-pedals-1024x600.png"))
            _check_layout(page, "line", width, height)

            for width, height in SCREENS[1:]:
                page.set_viewport_size({"width": width, "height": height})
                page.wait_for_timeout(300)
                _check_layout(page, "line", width, height)
                page.screenshot(path=str(ARTIFACTS / f"line-{width}x{height}.png"))
            assert not errors, errors
        finally:
            browser.close()
    assert "Traceback" not in dashboard.log_tail(), dashboard.log_tail()


def _stroke_colours(page: Any) -> list[str]:
    return list(
        page.evaluate(
            "() => [...document.querySelectorAll('[data-testid=line-a] path')]"
            ".map(p => p.getAttribute('stroke'))"
        )
    )
