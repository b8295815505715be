"""Team plans and white-label from one team config: the pit wall, the report, the statboard and the sponsor report; the plan gate in `pitbox-cloud build` against moto."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from cloud_sync import cloud_command
from cloud_sync.compacted import load_session
from cloud_sync.outbox import Outbox
from cloud_sync.plans import (
    ConfigFileError,
    Feature,
    PlanError,
    TeamDirectory,
    require,
)
from cloud_sync.report.generator import SessionReportGenerator
from cloud_sync.sponsor.exposure import SponsorExposureTracker
from cloud_sync.sponsor.report import sponsor_html
from cloud_sync.statboard.builder import StatboardBuilder
from cloud_sync.uploader import Uploader
from driver_pc.protocol.team_config import load_team_config
from pitbox_appliance.compaction import compact_session
from pitbox_appliance.config import load_config
from pitbox_appliance.dashboard.theme import ThemeError, branding
from tests.cloud_sync.conftest import FAST, REGION, MotoServer
from tests.cloud_sync.test_sponsor import LIVERY, Race, _race
from tests.conftest import readonly_engine

LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
    '<rect width="120" height="40" fill="#ffcc00"/></svg>'
)


@pytest.fixture(scope="module")
def race(tmp_path_factory: pytest.TempPathFactory) -> Race:
    return _race(tmp_path_factory.mktemp("sponsor"))


def _team_dir(root: Path, plan: str = "pro") -> Path:
    teams = root / "teams"
    teams.mkdir(parents=True, exist_ok=True)
    (teams / "logo.svg").write_text(LOGO)
    # Only team configs sit in the directory (each *.yaml is one); liveries beside it.
    (teams / "liveries").mkdir(exist_ok=True)
    (teams / "liveries" / "livery.yaml").write_text(LIVERY)
    (teams / "pitbox.yaml").write_text(
        "team: pitbox-racing\n"
        "name: PitBox Racing Team\n"
        f"plan: {plan}\n"
        "white_label:\n"
        "  team_name: Night Owls\n"
        "  logo: logo.svg\n"
        "  accent_color: '#123456'\n"
        "  header_color: '#0a0b0c'\n"
        "livery: liveries/livery.yaml\n"
    )
    return teams


# ---- one config, four places ----------------------------------------------------------
@pytest.mark.parametrize("plan", ["pro", "free"])
def test_one_config_brands_pit_wall_report_board_and_sponsor_report(
    race: Race, tmp_path: Path, plan: str
) -> None:
    teams = _team_dir(tmp_path, plan)
    team_yaml = teams / "pitbox.yaml"
    appliance = tmp_path / "appliance.yaml"
    appliance.write_text(f"theme:\n  team_config: {team_yaml}\n  team_name: Ignored\n")
    loaded = load_config(appliance)
    pit_wall, logo_file = branding(loaded.dashboard, loaded.theme)
    config = load_team_config(team_yaml)
    brand = config.branding()
    session = load_session(race.root)
    report = SessionReportGenerator(session, brand=brand).build().html
    board = StatboardBuilder("pitbox-racing", [session], brand).html()
    sponsor = sponsor_html(SponsorExposureTracker(session).report(), brand)
    uri = "data:image/svg+xml;base64," + base64.b64encode(LOGO.encode()).decode()
    if plan == "pro":
        assert pit_wall.team_name == "Night Owls"
        assert pit_wall.accent_color == "#123456"
        assert pit_wall.header_color == "#0a0b0c"
        assert pit_wall.logo_url == "/theme/logo.svg"
        assert logo_file == teams / "logo.svg"
        for page in (report, board, sponsor):
            assert "Night Owls" in page
            assert "#123456" in page
            assert "#0a0b0c" in page
            assert uri in page
            assert 'data-white-label="true"' in page
    else:
        # The free plan has no white-label: PitBox's look everywhere, from the same file.
        assert pit_wall.team_name == "PitBox"
        assert pit_wall.logo_url is None
        assert logo_file is None
        for page in (report, board, sponsor):
            assert "Night Owls" not in page
            assert uri not in page
            assert "#123456" not in page
            assert 'data-white-label="false"' in page


def test_malformed_team_config_names_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(
        "team: Night Owls\nname: x\nplan: gold\nwhite_label:\n  accent_color: red\n"
    )
    with pytest.raises(ConfigFileError) as info:
        load_team_config(path)
    text = str(info.value)
    assert "team (line 1)" in text
    assert "plan (line 3)" in text
    assert "white_label.accent_color (line 5)" in text
    path.write_text("team: a\nname: b\nwhite_label:\n  logo: nope.png\n")
    with pytest.raises(
        ConfigFileError, match=r"white_label\.logo .*nope\.png.*\(line 4\)"
    ):
        load_team_config(path)
    # The pit wall refuses it too, naming the same key and line.
    appliance = tmp_path / "appliance.yaml"
    appliance.write_text(f"theme:\n  team_config: {path}\n")
    loaded = load_config(appliance)
    with pytest.raises(ThemeError, match=r"theme\.team_config: .*\(line 4\)"):
        branding(loaded.dashboard, loaded.theme)
    # A directory with two files for one team is refused.
    teams = tmp_path / "teams"
    teams.mkdir()
    (teams / "a.yaml").write_text("team: a\nname: A\n")
    (teams / "b.yaml").write_text("team: a\nname: B\n")
    with pytest.raises(ConfigFileError, match="already configured"):
        TeamDirectory.load(teams)


def test_plan_gate_in_code(tmp_path: Path) -> None:
    teams = TeamDirectory.load(_team_dir(tmp_path, "free"))
    assert not teams.allows("pitbox-racing", Feature.PREMIUM_API)
    with pytest.raises(PlanError, match="free plan"):
        teams.require("pitbox-racing", Feature.PRIVATE_STATBOARD)
    # A team nobody configured is free.
    with pytest.raises(PlanError):
        require(teams.get("nobody"), Feature.WHITE_LABEL)
    pro = TeamDirectory.load(_team_dir(tmp_path / "p", "pro"))
    for feature in Feature:
        pro.require("pitbox-racing", feature)


# ---- the gate in `pitbox-cloud build`, against moto ----------------------------------------
def test_build_gates_private_boards_and_brands_what_it_publishes(
    race: Race, moto: MotoServer, tmp_path: Path
) -> None:
    # The same race as two teams: pitbox-racing (pro, livery) and free-team (no config).
    outbox = race.root.parents[3]
    db = outbox.parent / "race.sqlite3"
    engine = readonly_engine(f"sqlite:///{db}")
    compact_session(engine, 1, outbox, team="free-team")
    engine.dispose()
    bucket = moto.bucket("pitbox-plans")
    target = moto.target(bucket)
    with Outbox(tmp_path / "q.sqlite3") as queue:
        done = Uploader(queue, outbox, target, FAST).run_once()
    assert len(done.done) == 2
    teams = _team_dir(tmp_path, "pro")
    env = {
        "PITBOX_S3_ACCESS_KEY_ID": moto.access_key,
        "PITBOX_S3_SECRET_ACCESS_KEY": moto.secret_key,
        "PITBOX_S3_REGION": REGION,
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            status = cloud_command.main(
                [
                    "build", "--bucket", f"s3://{bucket}/pitbox",
                    "--endpoint-url", moto.url, "--cache", str(tmp_path / "cache"),
                    "--teams", str(teams), "--no-pdf", "--json",
                ]
            )  # fmt: skip
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    result: dict[str, Any] = json.loads(buf.getvalue())
    assert status == 0, result
    assert set(result["boards"]) == {"pitbox-racing"}
    assert "free plan" in result["gated"]["free-team"]
    client = moto.client()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert not [k for k in keys if "/boards/" in k and "free-team" in k]
    board_key = "pitbox/boards/private/pitbox-racing/index.html"
    assert board_key in keys
    board = client.get_object(Bucket=bucket, Key=board_key)["Body"].read().decode()
    assert "Night Owls" in board
    assert 'id="sponsor-exposure"' in board
    assert "Acme Oil" in board
    data = json.loads(
        client.get_object(
            Bucket=bucket, Key="pitbox/boards/private/pitbox-racing/board.json"
        )["Body"].read()
    )
    assert data["sponsor_exposure"][0]["laps_led"] == race.led_truth
    # Sponsor reports for both teams' sessions; only the pro team's is white-labelled.
    sponsor = [k for k in keys if k.endswith("/sponsor/") is False and "/sponsor/" in k]
    pro = [k for k in sponsor if k.startswith("pitbox/team=pitbox-racing/")]
    free = [k for k in sponsor if k.startswith("pitbox/team=free-team/")]
    assert {k.rsplit("/", 1)[1] for k in pro} == {"sponsor.html", "sponsor.json"}
    pro_html = next(k for k in pro if k.endswith(".html"))
    free_html = next(k for k in free if k.endswith(".html"))
    body = client.get_object(Bucket=bucket, Key=pro_html)["Body"].read().decode()
    assert "Night Owls" in body
    assert "Acme Oil" in body
    body = client.get_object(Bucket=bucket, Key=free_html)["Body"].read().decode()
    assert "Night Owls" not in body
    assert "No livery config" in body
    report = next(
        k
        for k in keys
        if k.startswith("pitbox/team=pitbox-racing/") and k.endswith("report.html")
    )
    body = client.get_object(Bucket=bucket, Key=report)["Body"].read().decode()
    assert "Night Owls" in body
    assert result["sponsor_reports"]


def test_pitbox_report_takes_the_team_config(race: Race, tmp_path: Path) -> None:
    """The appliance-side `pitbox report` (the post-race worker's) is branded too."""
    from pitbox_appliance.cli import main as pitbox

    teams = _team_dir(tmp_path, "pro")
    db = race.root.parents[3].parent / "race.sqlite3"
    common = [
        "report", "1", "--db", f"sqlite:///{db}",
        "--outbox", str(race.root.parents[3]), "--no-pdf", "--json",
    ]  # fmt: skip
    out = tmp_path / "rep"
    assert (
        pitbox(
            [*common, "--out", str(out), "--team-config", str(teams / "pitbox.yaml")]
        )
        == 0
    )
    page = (out / "report.html").read_text()
    assert "Night Owls" in page
    assert 'data-white-label="true"' in page
    (teams / "bad.yaml").write_text("team: x\nname: y\nplan: gold\n")
    assert (
        pitbox(
            [
                *common,
                "--out",
                str(tmp_path / "bad"),
                "--team-config",
                str(teams / "bad.yaml"),
            ]
        )
        == 2
    )
