"""/devices in a real browser on the real core and API: make a code, a PC pairs, revoke it."""

from __future__ import annotations

import asyncio
import os
import re
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

from driver_pc.pairing import pair
from pitbox_appliance.api.app import bound_port, start_api
from pitbox_appliance.broker import free_port
from pitbox_appliance.config import (
    ApplianceConfig,
    CoreConfig,
    MqttConfig,
    SecurityConfig,
)
from pitbox_appliance.core.service import CoreService
from pitbox_appliance.security.pki import PkiFiles, ca_fingerprint
from tests.conftest import REPO_ROOT, BrokerHandle, wait_for
from tests.pitbox_appliance.dashboard.conftest import add_logins, log_in

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "engineer-token-0123456789"

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium not installed at /usr/bin/chromium",
    ),
]


@pytest.fixture
def core_with_api(
    broker: BrokerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CoreService, str, ApplianceConfig]]:
    monkeypatch.setenv("PITBOX_MQTT_PASSWORD", broker.appliance_password)
    config = ApplianceConfig(
        mqtt=MqttConfig(
            host=broker.host, port=broker.port, username=broker.appliance_user
        ),
        core=CoreConfig(db_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", api_port=0),
        security=SecurityConfig(
            dir=str(tmp_path / "security"), broker_run_dir=str(broker.run_dir)
        ),
    )
    core = CoreService(config, os.urandom(32))
    core.start()
    loop = asyncio.new_event_loop()
    monkeypatch.setenv("PITBOX_API_TOKENS", f"{TOKEN}:read+commands")
    runner = loop.run_until_complete(start_api(core))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield core, f"http://127.0.0.1:{bound_port(runner)}", config
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        core.stop()


def _dashboard(
    tmp_path: Path, broker: BrokerHandle, api_url: str
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    config = tmp_path / "dashboard.yaml"
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
                "security": {"dir": str(tmp_path / "security")},
            }
        )
    )
    add_logins(tmp_path / "security")
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
    url = f"http://127.0.0.1:{port}/devices"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    assert wait_for(answers, 30), (tmp_path / "dashboard.log").read_text()[-3000:]
    return url, process


def test_pair_and_revoke_from_the_touchscreen(
    core_with_api: tuple[CoreService, str, ApplianceConfig],
    broker: BrokerHandle,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    core, api_url, _config = core_with_api
    url, process = _dashboard(tmp_path, broker, api_url)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
            try:
                page = browser.new_page(viewport={"width": 800, "height": 480})
                log_in(page, url.removesuffix("devices"))
                page.goto(url)
                expect(page.get_by_test_id("dev-table")).to_contain_text(
                    "no PC paired yet", timeout=15_000
                )
                page.get_by_test_id("dev-source").fill("car5-pc2")
                page.get_by_test_id("dev-pair").click()
                code = page.get_by_test_id("dev-code")
                expect(code).to_have_text(re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$"))
                expect(page.get_by_test_id("dev-qr").locator("svg")).to_be_visible()
                expect(page.get_by_test_id("dev-table")).to_contain_text(
                    "waiting for its code"
                )
                # The driver PC redeems the code the screen shows.
                creds = pair(api_url, str(code.text_content()))
                assert creds.source == "car5-pc2"
                # The CA exists now: its fingerprint is on the page, for tablets.
                fingerprint = ca_fingerprint(PkiFiles(tmp_path / "security"))
                expect(page.get_by_test_id("dev-ca-fp")).to_contain_text(
                    fingerprint, timeout=15_000
                )
                row = page.get_by_test_id("dev-row-car5-pc2")
                expect(row).to_contain_text("not heard", timeout=10_000)
                assert page.evaluate("document.documentElement.scrollWidth") <= 800
                page.get_by_test_id("dev-revoke-car5-pc2").click()
                page.get_by_test_id("dev-revoke-confirm").click()
                expect(row).to_contain_text("revoked", timeout=10_000)
                expect(page.get_by_test_id("dev-status")).to_have_text(
                    "car5-pc2 revoked"
                )
            finally:
                browser.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    [device] = core.devices.devices()
    assert device.revoked_at is not None
    assert "car5-pc2" not in (broker.run_dir / "passwd").read_text()
