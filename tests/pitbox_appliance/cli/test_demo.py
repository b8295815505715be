"""The README's main job: ``pitbox demo`` runs broker, core and dashboard under supervisor."""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from pitbox_appliance.broker import free_port


@pytest.mark.timeout(120)
def test_demo_serves_dashboard_and_stores_laps(tmp_path: Path) -> None:
    if not shutil.which("mosquitto") and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto not installed")
    port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pitbox_appliance.cli",
            "demo",
            "--port",
            str(port),
            "--dir",
            str(tmp_path),
            "--speed",
            "10",
            "--laps",
            "20",
            "--duration",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        line = demo.stdout.readline()
        # HTTPS: the demo's dashboard binds 0.0.0.0 and the demo made a CA.
        assert f"https://127.0.0.1:{port}/" in line
        # The dashboard asks for a login; the demo made one and printed it.
        login = re.search(r"Dashboard login: (\S+) / (\S+)", demo.stdout.readline())
        assert login is not None
        base = f"https://127.0.0.1:{port}"
        tls = ssl.create_default_context(cafile=str(tmp_path / "security" / "ca.crt"))
        with urllib.request.urlopen(f"{base}/", timeout=10, context=tls) as page:
            assert page.url == f"{base}/login?next=/"
        form = urllib.parse.urlencode(
            {"name": login[1], "password": login[2], "next": "/"}
        ).encode()
        jar = urllib.request.HTTPCookieProcessor()
        opener = urllib.request.build_opener(
            jar, urllib.request.HTTPSHandler(context=tls)
        )
        with opener.open(f"{base}/login", data=form, timeout=10) as page:
            assert page.status == 200
            assert page.url == f"{base}/"
        assert [c.name for c in jar.cookiejar] == ["pitbox_session"]
        db = f"sqlite:///{tmp_path / 'pitbox.sqlite3'}"
        deadline = time.monotonic() + 40
        laps: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(laps) < 3:
            time.sleep(1)
            out = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pitbox_appliance.cli",
                    "laps",
                    "--json",
                    "--db",
                    db,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            laps = json.loads(out.stdout or "[]")
        assert len(laps) >= 3
        assert demo.wait(timeout=60) == 0
        assert "PitBox demo stopped." in (demo.stdout.read() or "")
    finally:
        if demo.poll() is None:
            # SIGTERM first: the demo stops its supervisord (SIGKILL would orphan it,
            # with the broker, core and dashboard it runs).
            demo.terminate()
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
