"""HTTPS for the dashboard and the API once the appliance has its CA, with a real core, dashboard and Chromium.

The servers bind to the host's end of a veth pair of a namespace this test makes
(a LAN address, not loopback: loopback binds stay plain HTTP). The API answers
HTTPS there, verified against the appliance CA and refused by a client without
it, and plain HTTP on 127.0.0.1 (the appliance's own programs); the CA certificate
is on a plain-HTTP page for tablets. Chromium trusting exactly the dashboard's
certificate (``--ignore-certificate-errors-spki-list``) loads the dashboard over
HTTPS; without it the certificate is refused.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pitbox_appliance.broker import free_port
from pitbox_appliance.security.pki import ca_fingerprint, ensure_pki, spki_sha256
from tests.conftest import REPO_ROOT, BrokerHandle
from tests.system.netns import Netns, network_namespace

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
    "--disable-background-networking",
    "--disable-component-update",
]


@pytest.fixture
def netns() -> Iterator[Netns]:
    with network_namespace() as ns:
        yield ns


def _start(
    module: str, config: Path, env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(config)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _get(url: str, context: ssl.SSLContext | None = None, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout, context=context) as reply:
        body: bytes = reply.read()
        return body


def _wait(
    url: str,
    context: ssl.SSLContext | None,
    process: subprocess.Popen[bytes],
    log: Path,
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: the server exited\n{log.read_text()[-3000:]}")
        try:
            _get(url, context, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers (a login redirect or 401 is an answer)
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    pytest.fail(f"{url} did not answer\n{log.read_text()[-3000:]}")


@pytest.mark.timeout(240)
def test_api_and_dashboard_over_https_with_the_appliance_ca(
    broker: BrokerHandle, netns: Netns, tmp_path: Path
) -> None:
    pki = ensure_pki(tmp_path / "security", ["127.0.0.1"])
    api_port, ca_port, dash_port = free_port(), free_port(), free_port()
    lan = netns.host_ip
    config = tmp_path / "appliance.yaml"
    config.write_text(
        f"""version: 1
mqtt:
  host: {broker.host}
  port: {broker.port}
  username: {broker.appliance_user}
core:
  db_url: sqlite:///{tmp_path / "core.sqlite3"}
  api_host: {lan}
  api_port: {api_port}
  advertise: false
dashboard:
  host: {lan}
  port: {dash_port}
security:
  dir: {pki.directory}
  broker_run_dir: {broker.run_dir}
  ca_http_port: {ca_port}
"""
    )
    env = {
        **os.environ,
        "PITBOX_TEAM_KEY": os.urandom(32).hex(),
        "PITBOX_MQTT_PASSWORD": broker.appliance_password,
    }
    env.pop("PYTEST_CURRENT_TEST", None)
    ca = ssl.create_default_context(cafile=str(pki.ca_cert))
    core_log, dash_log = tmp_path / "core.log", tmp_path / "dashboard.log"
    core = _start("pitbox_appliance.core", config, env, core_log)
    dashboard = _start("pitbox_appliance.dashboard", config, env, dash_log)
    try:
        health = f"https://{lan}:{api_port}/api/v1/health"
        _wait(health, ca, core, core_log)
        # The API over HTTPS, verified against the appliance CA for its LAN address.
        assert b"status" in _get(health, ca)
        # A client without the CA refuses the certificate; plain HTTP is not served
        # on the LAN address.
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(health, ssl.create_default_context())
        with pytest.raises((urllib.error.URLError, OSError)):
            _get(f"http://{lan}:{api_port}/api/v1/health")
        # Plain HTTP stays on 127.0.0.1 for the appliance's own programs.
        assert b"status" in _get(f"http://127.0.0.1:{api_port}/api/v1/health")
        # The CA for tablets, on plain HTTP, with its fingerprint.
        assert _get(f"http://{lan}:{ca_port}/ca.crt") == pki.ca_cert.read_bytes()
        page = _get(f"http://{lan}:{ca_port}/").decode()
        assert ca_fingerprint(pki) in page
        # The web certificate names the LAN address and is the CA's; the kiosk's
        # pin of it is on the same plain-HTTP page.
        web_cert = pki.directory / "web.crt"
        assert web_cert.exists()
        pin = _get(f"http://127.0.0.1:{ca_port}/web.spki").decode().strip()
        assert pin == spki_sha256(web_cert)
        dash_url = f"https://{lan}:{dash_port}/"
        _wait(dash_url, ca, dashboard, dash_log)
        if not CHROMIUM.exists():
            pytest.skip("Debian chromium not installed at /usr/bin/chromium")
        from playwright.sync_api import Error, sync_playwright

        flag = f"--ignore-certificate-errors-spki-list={pin}"
        with sync_playwright() as pw:
            trusting = pw.chromium.launch(
                executable_path=str(CHROMIUM), args=[*ARGS, flag]
            )
            try:
                tab = trusting.new_page()
                response = tab.goto(dash_url, timeout=60_000)
                assert response is not None
                assert response.ok, response.status
                assert tab.url.startswith("https://")
                # The login page (nobody is logged in), served over HTTPS.
                heading = tab.wait_for_selector("h1", timeout=30_000)
                assert heading is not None
                assert "pit wall" in heading.inner_text()
            finally:
                trusting.close()
            plain = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                    plain.new_page().goto(dash_url, timeout=60_000)
            finally:
                plain.close()
    finally:
        _stop(dashboard)
        _stop(core)
