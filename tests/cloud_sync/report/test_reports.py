"""Post-session reports end to end: sessions replayed → compacted → uploaded to moto (signed) → reports, PDF, events."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from cloud_sync import cloud_command
from cloud_sync.compacted import load_session
from cloud_sync.outbox import Outbox
from cloud_sync.targets import FileTarget
from cloud_sync.uploader import Uploader
from driver_pc.protocol.events import event_payload
from tests.cloud_sync.conftest import FAST, REGION, MotoServer, Team, build_team
from tests.conftest import REPO_ROOT

ROOT = REPO_ROOT
ARTIFACTS = ROOT / "test-artifacts" / "reports"
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian chromium not installed at /usr/bin/chromium"
)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Team:
    return build_team(tmp_path_factory.mktemp("team"))


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cloud_build(
    team: Team, moto: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Upload the team's sets to moto, then run ``pitbox-cloud build`` against it."""
    bucket = moto.bucket("pitbox-reports")
    target = moto.target(bucket)
    with Outbox(tmp_path_factory.mktemp("q") / "q.sqlite3") as outbox:
        report = Uploader(outbox, team.outbox, target, FAST).run_once()
    assert sorted(report.done) == sorted(team.paths)
    cache = tmp_path_factory.mktemp("cache")
    env = {
        "PITBOX_S3_ACCESS_KEY_ID": moto.access_key,
        "PITBOX_S3_SECRET_ACCESS_KEY": moto.secret_key,
        "PITBOX_S3_REGION": REGION,
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    out = tmp_path_factory.mktemp("out") / "result.json"
    try:
        argv = [
            "build",
            "--bucket",
            f"s3://{bucket}/pitbox",
            "--endpoint-url",
            moto.url,
            "--cache",
            str(cache),
            "--json",
            "--no-pdf",  # the PDF is printed by the `pitbox report` test below
        ]
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            status = cloud_command.main(argv)
        out.write_text(buf.getvalue())
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert status == 0, buf.getvalue()
    result: dict[str, Any] = json.loads(buf.getvalue())
    result["_bucket"] = bucket
    result["_cache"] = cache
    return result


def _clean_laps(team: Team, index: int, driver: str | None = None) -> list[float]:
    rows = pq.read_table(
        team.outbox / team.paths[index] / "laps" / "laps.parquet"
    ).to_pylist()
    return [
        r["lap_time"]
        for r in rows
        if r["lap_time"] is not None
        and not r["pit_lap"]
        and r["start_time"] is not None
        and (driver is None or r["driver_name"] == driver)
    ]


def _events(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in result["events"] if e["kind"] == kind]


def test_cloud_build_publishes_a_report_per_session(
    cloud_build: dict[str, Any], team: Team, moto: MotoServer
) -> None:
    client = moto.client()
    keys = [
        o["Key"]
        for o in client.list_objects_v2(Bucket=cloud_build["_bucket"])["Contents"]
    ]
    for path in team.paths:
        mine = [k for k in keys if k.startswith(f"pitbox/{path}/report/")]
        assert {k.rsplit("/", 1)[1] for k in mine} == {"report.html", "report.json"}
    ready = _events(cloud_build, "session_report_ready")
    assert len(ready) == 3
    for event in ready:
        event_payload(
            "session_report_ready", {k: v for k, v in event.items() if k != "kind"}
        )
        assert event["url"].startswith(f"s3://{cloud_build['_bucket']}/pitbox/team=")
        assert event["pdf_url"] is None
    # The HTML states what the data says: best lap and lap count of session 2.
    html_key = next(
        k
        for k in keys
        if k.startswith(f"pitbox/{team.paths[1]}/report/") and k.endswith(".html")
    )
    html = (
        client.get_object(Bucket=cloud_build["_bucket"], Key=html_key)["Body"]
        .read()
        .decode()
    )
    clean = _clean_laps(team, 1)
    assert f"{min(clean):.3f}" in html
    assert f"({len(clean)} clean)" in html
    assert html.count("<svg") == 6
    # The pit stop of session 2 against the first window advised before it.
    root = team.outbox / team.paths[1]
    laps = pq.read_table(root / "laps" / "laps.parquet").to_pylist()
    stop = next(r["lap_number"] for r in laps if r["pit_lap"])
    advice = [
        json.loads(r["payload"])
        for r in pq.read_table(root / "events" / "events.parquet").to_pylist()
        if r["kind"] == "strategy_recommendation"
    ]
    window = next(
        (a["pit_window_open_lap"], a["pit_window_close_lap"])
        for a in advice
        if a["stops_needed"] and a["pit_window_open_lap"] is not None
    )
    where = "inside" if window[0] <= stop <= window[1] else "outside"
    assert f"stopped on lap {stop} ({where} the window)" in html
    # Mistakes of session 2 are tabled per section; session 1 has none.
    assert "<td>S3</td><td>braking</td><td>2</td><td>0.65</td>" in html
    first = next(
        k
        for k in keys
        if k.startswith(f"pitbox/{team.paths[0]}/report/") and k.endswith(".html")
    )
    html1 = (
        client.get_object(Bucket=cloud_build["_bucket"], Key=first)["Body"]
        .read()
        .decode()
    )
    assert "None recorded (no mistake events in this session)" in html1


def test_setup_impact_from_car_setup_changes(
    cloud_build: dict[str, Any], team: Team
) -> None:
    impacts = _events(cloud_build, "setup_impact_analysis")
    assert len(impacts) == 1, impacts
    impact = impacts[0]
    event_payload(
        "setup_impact_analysis", {k: v for k, v in impact.items() if k != "kind"}
    )
    before, after = _clean_laps(team, 0, "Alex Sim"), _clean_laps(team, 1, "Alex Sim")
    assert impact["driver"] == "Alex Sim"
    assert (impact["laps_before"], impact["laps_after"]) == (len(before), len(after))
    expected = statistics.fmean(after) - statistics.fmean(before)
    assert impact["lap_time_delta_s"] == pytest.approx(expected, abs=1e-9)
    # A bootstrap interval of a difference of means: positive, and not absurdly wide.
    spread = np.std(before + after)
    assert 0 < impact["uncertainty_s"] < 4 * spread
    changed = {c["path"]: (c["before"], c["after"]) for c in impact["changes"]}
    assert changed == {
        "Chassis.Front.ToeIn": ("-1.0 mm", "-2.5 mm"),
        "Chassis.Rear.ARB": (3, 5),
        "UpdateCount": (1, 2),
    }


def test_badges_and_goals_from_the_data(
    cloud_build: dict[str, Any], team: Team
) -> None:
    badges = _events(cloud_build, "badge_earned")
    goals = _events(cloud_build, "training_goal_progress")
    assert badges
    assert goals
    for event in badges:
        event_payload("badge_earned", {k: v for k, v in event.items() if k != "kind"})
    # Session 1's consistency badge follows from its own lap times.
    spread = 1.4826 * float(
        np.median(
            np.abs(np.subtract(_clean_laps(team, 0), np.median(_clean_laps(team, 0))))
        )
    )
    levels = [
        lvl
        for lvl, limit in zip(
            ("bronze", "silver", "gold", "platinum"), (0.5, 0.3, 0.2, 0.1), strict=True
        )
        if spread <= limit
    ]
    first = [
        b
        for b in badges
        if team.paths[0] in b["reason"] and b["badge_id"].startswith("consistency-")
    ]
    assert [b["badge_id"] for b in first] == (
        [f"consistency-{levels[-1]}"] if levels else []
    )
    for event in goals:
        body = event_payload(
            "training_goal_progress", {k: v for k, v in event.items() if k != "kind"}
        )
        assert 0.0 <= body["progress"] <= 1.0
    # Alex's goals in session 2 measure against his session-1 baseline.
    alex = [
        g
        for g in goals
        if g["driver"] == "Alex Sim" and g["goal_id"] == "alex-sim-consistency"
    ]
    assert len(alex) == 2


@needs_chromium
def test_report_in_a_real_browser(cloud_build: dict[str, Any], team: Team) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    local = cloud_build["_cache"] / "reports" / team.paths[1]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto((local / "report.html").as_uri())
            assert (
                page.locator("h1")
                .inner_text()
                .startswith("Session report: Martinsville")
            )
            assert page.locator("svg").count() == 6
            # Every figure was laid out with a real size.
            for i in range(6):
                box = page.locator("div.figure > svg").nth(i).bounding_box()
                assert box is not None
                assert box["width"] > 200
                assert box["height"] > 100
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
            assert errors == []
        finally:
            browser.close()


@needs_chromium
def test_pitbox_report_command_publishes_and_lists_its_events(
    team: Team,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The events announced; tests/system/test_postrace.py posts them to a real core."""
    from pitbox_appliance.cli import main as pitbox

    target = tmp_path / "bucket"
    target.mkdir()
    capsys.readouterr()
    status = pitbox(
        [
            "report",
            "2",
            "--db",
            team.db_url,
            "--outbox",
            str(team.outbox),
            "--out",
            str(tmp_path / "rep"),
            "--target",
            f"file://{target}",
            "--json",
        ]
    )
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    assert result["announced"] == 0  # no --api given
    received = [{"car": "import", **e} for e in result["events"]]
    kinds = [m["kind"] for m in received]
    assert "session_report_ready" in kinds
    assert "training_goal_progress" in kinds
    assert "setup_impact_analysis" in kinds  # session 1 in the outbox is the history
    for message in received:
        assert message["car"] == "import"
        event_payload(
            message["kind"],
            {k: v for k, v in message.items() if k not in ("kind", "car")},
        )
    ready = next(m for m in received if m["kind"] == "session_report_ready")
    published = Path(ready["url"].removeprefix("file://").replace("%3D", "="))
    assert published.is_file()
    assert published.read_text() == (tmp_path / "rep" / "report.html").read_text()
    assert ready["pdf_url"] == ready["url"].replace("report.html", "report.pdf")
    assert (
        published.with_name("report.pdf").read_bytes()
        == (tmp_path / "rep" / "report.pdf").read_bytes()
    )
    pdf = tmp_path / "rep" / "report.pdf"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert pdf.read_bytes()[:5] == b"%PDF-"
    subprocess.run(
        ["pdftoppm", "-r", "40", "-png", str(pdf), str(ARTIFACTS / "report-page")],
        check=True,
        timeout=60,
    )
    pages = sorted(ARTIFACTS.glob("report-page-*.png"))
    assert len(pages) >= 3
    from PIL import Image

    ink = np.asarray(Image.open(pages[0]).convert("L"))
    assert (ink < 128).mean() > 0.005  # text and a plot, not a blank page
    # Publishing again finds the same report there (create-only, nothing overwritten).
    assert (
        pitbox(
            [
                "report",
                "2",
                "--db",
                team.db_url,
                "--outbox",
                str(team.outbox),
                "--out",
                str(tmp_path / "rep2"),
                "--target",
                f"file://{target}",
                "--no-pdf",
            ]
        )
        == 0
    )
    assert len(list(target.rglob("report.html"))) == 1


def test_report_command_bad_input(
    team: Team, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pitbox_appliance.cli import main as pitbox

    assert (
        pitbox(
            [
                "report",
                "99",
                "--db",
                team.db_url,
                "--outbox",
                str(team.outbox),
                "--no-pdf",
            ]
        )
        == 2
    )
    assert "no session 99" in capsys.readouterr().err
    assert (
        pitbox(["report", "1", "--db", f"sqlite:///{tmp_path / 'none.sqlite3'}"]) == 2
    )
    assert "no database" in capsys.readouterr().err
    assert pitbox(["report", "1", "--db", team.db_url, "--api", "nohostport"]) == 2
    assert "http://HOST:PORT" in capsys.readouterr().err


def test_uploader_program_runs_under_the_rendered_supervisor_config(
    team: Team, tmp_path: Path
) -> None:
    """``[program:pitbox-uploader]`` starts under supervisord and uploads what is in the outbox."""
    import shutil

    from pitbox_appliance.broker import render_supervisor_config

    home = tmp_path / "home"
    outbox = home / "data" / "pitbox" / "outbox"
    shutil.copytree(team.outbox / team.paths[0], outbox / team.paths[0])
    target = tmp_path / "target"
    target.mkdir()
    run_dir = tmp_path / "run"
    conf = render_supervisor_config(
        run_dir,
        sys.executable,
        tmp_path / "appliance.yaml",
        "ab" * 32,
        "secret",
        sync_target=f"file://{target}",
    )
    # Only the uploader: the broker, core and dashboard have their own tests.
    import configparser

    parser = configparser.RawConfigParser()
    parser.read(conf)
    for section in [
        s
        for s in parser.sections()
        if s.startswith("program:") and s != "program:pitbox-uploader"
    ]:
        parser.remove_section(section)
    assert (
        parser["program:pitbox-uploader"]["command"]
        == f"nice -n 10 {sys.executable} -m cloud_sync sync --watch"
    )
    with conf.open("w") as fh:
        parser.write(fh)
    env = dict(
        os.environ,
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        PYTHONPATH=str(ROOT),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        manifest = target / team.paths[0] / "manifest.json"
        deadline = time.monotonic() + 30
        while not manifest.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        log = run_dir / "logs" / "pitbox-uploader.log"
        assert manifest.exists(), log.read_text() if log.exists() else "no log"
        assert (
            manifest.read_bytes()
            == (outbox / team.paths[0] / "manifest.json").read_bytes()
        )
        deadline = time.monotonic() + 20
        while True:
            status = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "supervisor.supervisorctl",
                    "-c",
                    str(conf),
                    "status",
                ],
                capture_output=True,
                text=True,
                timeout=20,
            )
            if "RUNNING" in status.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert "pitbox-uploader" in status.stdout, status.stdout
        assert "RUNNING" in status.stdout, status.stdout
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()


def test_file_target_reports_never_overwrite(tmp_path: Path) -> None:
    from cloud_sync.targets import ConflictError, PutResult

    target = FileTarget(tmp_path)
    assert target.put_bytes("a/r.html", b"one", "text/html") is PutResult.CREATED
    assert target.put_bytes("a/r.html", b"one", "text/html") is PutResult.ALREADY_THERE
    with pytest.raises(ConflictError):
        target.put_bytes("a/r.html", b"two", "text/html")
    assert (
        target.put_bytes("a/r.html", b"two", "text/html", create_only=False)
        is PutResult.CREATED
    )
    assert (tmp_path / "a" / "r.html").read_bytes() == b"two"


def test_load_session_refuses_unknown_schema(team: Team, tmp_path: Path) -> None:
    import shutil

    from driver_pc.protocol.manifest import ManifestError

    copy = tmp_path / "set"
    shutil.copytree(team.outbox / team.paths[0], copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="schema_version 99 unknown"):
        load_session(copy)
