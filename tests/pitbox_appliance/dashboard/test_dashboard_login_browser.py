"""Logins in a real headless Chromium: first run, each role's pages and controls, logout, the rate limit.

One dashboard process (``python -m pitbox_appliance.dashboard``) on a real Mosquitto fed
by the simulated core of the browser test, its users added with ``pitbox users`` while
it runs. No core API runs: an engineer's command comes back "unreachable", which shows
it got past the role check; a refused one never leaves the dashboard.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from pitbox_appliance.broker import free_port
from pitbox_appliance.cli import main as pitbox
from tests.conftest import REPO_ROOT, BrokerHandle
from tests.pitbox_appliance.dashboard.conftest import (
    LOGINS,
    import_sim_session,
    log_in,
)
from tests.pitbox_appliance.dashboard.test_dashboard_browser import (
    CHROMIUM,
    STOP_TIMEOUT_S,
    CoreSimulator,
    Dashboard,
    _wait_for_http,
)

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="Debian chromium not installed at /usr/bin/chromium",
    ),
]
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


@pytest.fixture
def bare_dashboard(broker: BrokerHandle, tmp_path: Path) -> Iterator[Dashboard]:
    """A dashboard whose users file does not exist yet (a first run)."""
    port = free_port()
    db = import_sim_session(tmp_path)
    config = tmp_path / "appliance.yaml"
    config.write_text(
        f"""version: 1
mqtt:
  host: {broker.host}
  port: {broker.port}
  username: {broker.appliance_user}
core:
  db_url: {db.url}
  api_port: {free_port()}
dashboard:
  host: 127.0.0.1
  port: {port}
security:
  dir: {tmp_path / "security"}
"""
    )
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
                f"{config}",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    handle = Dashboard(process, f"http://127.0.0.1:{port}/", log, db)
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


def _users(config: Path, *args: str, password: str | None = None) -> None:
    """``pitbox users --config … ARGS`` (password on stdin)."""
    stdin = sys.stdin
    try:
        if password is not None:
            sys.stdin = io.StringIO(password + "\n")
            args = (*args, "--password-stdin")
        assert pitbox(["users", "--config", str(config), *args]) == 0
    finally:
        sys.stdin = stdin


def _open(page: Any, name: str) -> None:
    """Follow the navigation link (a loaded machine may take a while)."""
    from playwright.sync_api import expect

    # On a loaded machine NiceGUI may reload a fresh tab whose socket was slow to
    # connect (nicegui.js: "handshake failed"), swallowing the click: click again.
    for _attempt in range(3):
        page.wait_for_function("window.did_handshake === true", timeout=15_000)
        page.get_by_test_id(f"nav-{name}").click()
        try:
            expect(page.get_by_test_id(f"page-{name}")).to_be_visible(timeout=10_000)
            return
        except AssertionError:
            continue
    expect(page.get_by_test_id(f"page-{name}")).to_be_visible(timeout=5_000)


def _socket_needs_a_session(base: str) -> None:
    """The live updates' socket (HTTP polling and websocket) answer only a session."""
    socket = f"{base}_nicegui_ws/socket.io/?EIO=4&transport="
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{socket}polling", timeout=5)
    assert refused.value.code == 401

    async def websocket() -> None:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError):
                await session.ws_connect(f"{socket}websocket".replace("http", "ws", 1))

    asyncio.run(websocket())


def _nav(page: Any) -> list[str]:
    return sorted(
        str(link.get_attribute("data-testid"))
        for link in page.locator('nav a[data-testid^="nav-"]').all()
    )


def test_each_role_sees_and_does_only_its_part(
    broker: BrokerHandle, bare_dashboard: Dashboard, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    base = bare_dashboard.url
    config = tmp_path / "appliance.yaml"
    _socket_needs_a_session(base)
    with (
        CoreSimulator(broker, bare_dashboard.db.session_key),
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        try:
            # ---- first run: nobody exists yet; the page says how to add the engineer.
            first = browser.new_page(viewport={"width": 800, "height": 480})
            first.goto(f"{base}laps")
            assert first.url == f"{base}login?next=/laps"
            expect(first.get_by_test_id("first-run")).to_contain_text(
                "pitbox users add NAME --role engineer"
            )
            expect(first.get_by_test_id("login-form")).to_have_count(0)
            for name, (role, password) in LOGINS.items():
                _users(config, "add", name, "--role", role, password=password)
            first.reload()
            expect(first.get_by_test_id("login-form")).to_be_visible()

            # ---- a wrong password: refused, still on the login page.
            first.get_by_test_id("login-name").fill("eng")
            first.get_by_test_id("login-password").fill("not-the-password")
            first.get_by_test_id("login-submit").click()
            expect(first.get_by_test_id("login-message")).to_have_text(
                "Wrong name or password."
            )
            assert first.url == f"{base}login"
            first.goto(base)
            assert first.url.startswith(f"{base}login")
            first.close()

            # ---- viewer: read-only pages; no camera, no devices, no checklist.
            viewer = browser.new_context(viewport={"width": 1280, "height": 800})
            page = viewer.new_page()
            console: list[str] = []
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            log_in(page, base, "view")
            expect(page.get_by_test_id("user")).to_have_text("view · viewer")
            expect(page.get_by_test_id("driver")).to_have_text(
                "Jane Doe", timeout=15_000
            )
            assert "nav-camera" not in _nav(page)
            assert "nav-devices" not in _nav(page)
            assert "nav-stints" in _nav(page)
            try:
                _open(page, "stints")
            except AssertionError:
                raise AssertionError("\n".join(console)) from None
            expect(page.get_by_test_id("handoff-readonly")).to_be_visible()
            expect(page.get_by_test_id("handoff-state")).to_have_text(
                "0/4 checked", timeout=10_000
            )
            expect(page.get_by_test_id("check-fuel")).to_have_count(0)
            expect(page.get_by_test_id("next-driver")).to_be_hidden()
            # Typed URLs are refused by the server, not only left out of the rail.
            for path in ("camera", "devices"):
                page.goto(f"{base}{path}")
                expect(page.get_by_test_id("refused")).to_contain_text(
                    "for the engineer role"
                )
                expect(page.get_by_test_id(f"page-{path}")).to_have_count(0)
                expect(page.get_by_test_id("send-camera")).to_have_count(0)
            cookies = {c["name"]: c for c in viewer.cookies()}
            session = cookies["pitbox_session"]
            assert session["httpOnly"] is True
            assert session["sameSite"] == "Lax"
            assert session["secure"] is False  # plain HTTP here; Secure over HTTPS
            viewer.close()  # fewer live tabs on a 2-core machine

            # ---- crew: the handoff checklist, still no camera or devices.
            crew = browser.new_context(viewport={"width": 1280, "height": 800})
            page = crew.new_page()
            log_in(page, base, "crew")
            assert "nav-camera" not in _nav(page)
            assert "nav-devices" not in _nav(page)
            _open(page, "stints")
            page.get_by_test_id("check-fuel").click()
            expect(page.get_by_test_id("handoff-state")).to_have_text("1/4 checked")
            page.goto(f"{base}camera")
            expect(page.get_by_test_id("refused")).to_contain_text("engineer")

            # ---- engineer: everything; a command goes out named after the sender.
            engineer = browser.new_context(viewport={"width": 1280, "height": 800})
            page = engineer.new_page()
            log_in(page, base, "eng")
            assert {"nav-camera", "nav-devices"} <= set(_nav(page))
            _open(page, "camera")
            page.get_by_test_id("message-text").fill("Box now")
            page.get_by_test_id("send-message").click()
            expect(page.get_by_test_id("message-status")).to_contain_text(
                "unreachable", timeout=10_000
            )
            expect(page.get_by_test_id("command-log")).to_contain_text(
                "· eng car1 message: Box now"
            )

            # The engineer is made a viewer while the camera page is open: the next
            # click is refused by the handler, and nothing is sent.
            _users(config, "add", "eng", "--role", "viewer", "--replace",
                   password=LOGINS["eng"][1])  # fmt: skip
            page.get_by_test_id("message-text").fill("Stay out")
            page.get_by_test_id("send-message").click()
            expect(page.get_by_test_id("message-status")).to_have_text(
                "Refused: engineers only."
            )
            expect(page.get_by_test_id("command-log")).not_to_contain_text("Stay out")

            # ---- logout ends the session; removal ends a session in an open tab.
            page.get_by_test_id("logout").click()
            expect(page.get_by_test_id("login-message")).to_have_text("Logged out.")
            page.goto(f"{base}strategy")
            assert page.url.startswith(f"{base}login")
            engineer.close()
            page = crew.pages[0]
            page.bring_to_front()
            page.goto(base)
            expect(page.get_by_test_id("user")).to_have_text("crew · crew")
            page.wait_for_function("window.did_handshake === true", timeout=15_000)
            _users(config, "remove", "crew")
            expect(page.get_by_test_id("login-message")).to_have_text(
                "Your session ended: log in again.", timeout=20_000
            )

            # ---- the rate limit: 5 wrong passwords, then even the right one waits.
            page = browser.new_page()
            page.goto(f"{base}login")
            for attempt in range(5):
                page.get_by_test_id("login-name").fill("view")
                page.get_by_test_id("login-password").fill(f"guess-{attempt}")
                page.get_by_test_id("login-submit").click()
                expect(page.get_by_test_id("login-message")).to_have_text(
                    "Wrong name or password."
                )
            page.get_by_test_id("login-name").fill("view")
            page.get_by_test_id("login-password").fill(LOGINS["view"][1])
            page.get_by_test_id("login-submit").click()
            expect(page.get_by_test_id("login-message")).to_have_text(
                re.compile(
                    r"Too many failed logins for this name: try again in (2\d|30) s\."
                )
            )
            assert page.url == f"{base}login"
        finally:
            browser.close()
    log = bare_dashboard.log_tail()
    assert "refused sending commands to eng: needs the engineer role" in log
    assert "failed login for 'eng' from 127.0.0.1" in log
    assert "not-the-password" not in log
    assert "Traceback" not in log
