"""Team statboard: figures from the compacted sessions, public vs private objects, presigned links, a real browser."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from botocore.config import Config

from cloud_sync.compacted import load_session
from cloud_sync.s3 import S3Target
from cloud_sync.statboard.builder import StatboardBuilder
from cloud_sync.statboard.publish import publish_board
from tests.cloud_sync.conftest import Team, build_team, free_port
from tests.conftest import REPO_ROOT

ROOT = REPO_ROOT
ARTIFACTS = ROOT / "test-artifacts" / "statboard"
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Team:
    return build_team(tmp_path_factory.mktemp("team"))


@pytest.fixture(scope="module")
def acl_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server with its default access control: anonymous GETs obey object ACLs.

    (With signature checking on, moto answers unsigned and presigned GETs with a 500,
    so ACLs are shown here; presigned expiry is in test_presigned_link_expires.)
    """
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("ab")
    env = {k: v for k, v in os.environ.items() if k != "INITIAL_NO_AUTH_ACTION_COUNT"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert proc.poll() is None, "moto exited"
            assert time.monotonic() < deadline, "moto did not start"
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _client(url: str) -> object:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="team",
        aws_secret_access_key="team-secret",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def test_board_figures_follow_the_laps(team: Team) -> None:
    sessions = [load_session(team.outbox / p, telemetry=False) for p in team.paths]
    data = StatboardBuilder("pitbox-racing", sessions).data()
    rows = [
        r
        for p in team.paths
        for r in pq.read_table(team.outbox / p / "laps" / "laps.parquet").to_pylist()
    ]
    by_name = {d["name"]: d for d in data["drivers"]}
    assert set(by_name) == {"Alex Sim", "Bea Sim"}
    for name, figures in by_name.items():
        mine = [r for r in rows if r["driver_name"] == name]
        clean = [
            r["lap_time"]
            for r in mine
            if r["lap_time"] is not None
            and not r["pit_lap"]
            and r["start_time"] is not None
        ]
        assert figures["laps"] == len(mine)
        assert figures["clean_share"] == pytest.approx(len(clean) / len(mine))
        assert list(figures["best"].values()) == [min(clean)]
    cars = {c["name"]: c for c in data["cars"]}
    assert set(cars) == {"import"}
    assert cars["import"]["laps"] == len(rows)
    assert cars["import"]["stints"] == sum(
        pq.read_metadata(team.outbox / p / "stints" / "stints.parquet").num_rows
        for p in team.paths
    )


def test_public_board_open_private_board_only_by_link(
    team: Team, acl_moto: str, tmp_path: Path
) -> None:
    client = _client(acl_moto)
    client.create_bucket(Bucket="team-boards")  # type: ignore[attr-defined]
    target = S3Target("team-boards", "pitbox", client=client)
    sessions = [load_session(team.outbox / p, telemetry=False) for p in team.paths]
    board = StatboardBuilder("pitbox-racing", sessions)
    page = board.html()
    public = publish_board(target, "pitbox-racing", page, board.data(), public=True)
    private = publish_board(
        target, "pitbox-racing", page, board.data(), public=False, expires_in=600
    )
    assert (
        public
        == f"{acl_moto}/team-boards/pitbox/boards/public/pitbox-racing/index.html"
    )
    status, body = _get(public)  # anonymous, no signature
    assert status == 200
    assert body.decode() == page
    status, _ = _get(private.split("?", 1)[0])  # the private object, anonymous
    assert status == 403
    status, body = _get(private)  # the presigned link
    assert status == 200
    assert body.decode() == page
    # Republishing replaces the board (a new build), still readable by anyone.
    publish_board(target, "pitbox-racing", page + "<!-- v2 -->", {}, public=True)
    assert _get(public)[1].decode().endswith("<!-- v2 -->")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed")
def test_board_in_a_real_browser(team: Team, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    sessions = [load_session(team.outbox / p, telemetry=False) for p in team.paths]
    html = tmp_path / "index.html"
    html.write_text(StatboardBuilder("pitbox-racing", sessions).html())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(html.as_uri())
            assert page.locator("h1").inner_text() == "Team statboard: pitbox-racing"
            drivers = page.locator("table").nth(0).locator("tr")
            assert drivers.count() == 3  # header, Alex, Bea
            assert "Alex Sim" in drivers.nth(1).inner_text()
            box = page.locator("svg").first.bounding_box()
            assert box is not None
            assert box["width"] > 300
            page.screenshot(path=str(ARTIFACTS / "statboard.png"), full_page=True)
        finally:
            browser.close()


S3RVER = Path(
    os.environ.get(
        "PITBOX_S3RVER", ROOT / ".venv" / "node" / "node_modules" / ".bin" / "s3rver"
    )
)


@pytest.fixture
def s3rver(tmp_path: Path) -> Iterator[str]:
    """s3rver (npm; scripts/install.sh installs it with the dev extra): enforces link expiry."""
    if not S3RVER.exists():
        pytest.skip(
            f"s3rver not installed at {S3RVER} (scripts/install.sh installs it with npm)"
        )
    port = free_port()
    log = (tmp_path / "s3rver.log").open("ab")
    proc = subprocess.Popen(
        [
            str(S3RVER),
            "-d",
            str(tmp_path / "data"),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "--configure-bucket",
            "team-boards",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            assert proc.poll() is None, "s3rver exited"
            assert time.monotonic() < deadline, "s3rver did not start"
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_presigned_link_expires(s3rver: str, team: Team) -> None:
    # s3rver's fixed key pair; every request is signed (SigV4) and checked.
    client = boto3.client(
        "s3",
        endpoint_url=s3rver,
        region_name="us-east-1",
        aws_access_key_id="S3RVER",
        aws_secret_access_key="S3RVER",
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    target = S3Target("team-boards", "pitbox", client=client)
    sessions = [load_session(team.outbox / p, telemetry=False) for p in team.paths[:1]]
    board = StatboardBuilder("pitbox-racing", sessions)
    page = board.html()
    link = publish_board(
        target, "pitbox-racing", page, board.data(), public=False, expires_in=1
    )
    status, body = _get(link)
    assert status == 200
    assert body.decode() == page
    # A link naming a key pair the store does not know is refused. (s3rver, like moto,
    # does not recompute SigV4 query signatures, so a link with altered signature bytes
    # cannot be shown refused here: that check is S3's own. See docs/cloud.md.)
    forged = link.replace("X-Amz-Credential=S3RVER", "X-Amz-Credential=FORGED")
    status, body = _get(forged)
    assert status == 403
    assert b"InvalidAccessKeyId" in body
    time.sleep(2.2)
    status, body = _get(link)
    assert status == 403
    assert b"expired" in body
