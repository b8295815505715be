import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import real_file


def pitbox(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pitbox_appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_then_laps_json_simulated(sim_ibt: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    result = pitbox("import", "--quiet", str(sim_ibt), "--db", db)
    assert result.returncode == 0, result.stderr
    laps = json.loads(pitbox("laps", "--json", "--db", db).stdout)
    timed = [lap for lap in laps if lap["time_s"] is not None]
    assert len(timed) >= 5
    assert all(lap["driver"] == "Alex Sim" for lap in laps)
    assert all(20 < lap["time_s"] < 40 for lap in timed)
    # Importing the same file again stores nothing twice.
    assert pitbox("import", "--quiet", str(sim_ibt), "--db", db).returncode == 0
    assert len(json.loads(pitbox("laps", "--json", "--db", db).stdout)) == len(laps)


def test_import_real_martinsville(tmp_path: Path) -> None:
    path = real_file(
        "iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt"
    )
    db = f"sqlite:///{tmp_path / 'p.db'}"
    assert pitbox("import", "--quiet", str(path), "--db", db).returncode == 0
    laps = json.loads(pitbox("laps", "--json", "--db", db).stdout)
    times = [round(lap["time_s"], 2) for lap in laps if lap["time_s"]]
    assert times == [19.30, 19.55]
    assert {lap["lap"] for lap in laps} == {31, 32, 33}


def test_import_real_langley_reset_lap_is_invalid(tmp_path: Path) -> None:
    """The recording starts with iRacing's reset: lap 176 gets no time, as in iRacing."""
    path = real_file("iracing", "ibt", "skmodified_langley_2015-05-28_14-47-39.ibt")
    db = f"sqlite:///{tmp_path / 'p.db'}"
    assert pitbox("import", "--quiet", str(path), "--db", db).returncode == 0
    laps = json.loads(pitbox("laps", "--json", "--db", db).stdout)
    flags = [(lap["lap"], lap["invalid"], lap["refuelled"]) for lap in laps]
    assert flags == [(176, True, False), (177, False, False)]
    assert laps[0]["time_s"] is None
    assert abs(laps[1]["time_s"] - 15.0707) <= 1 / 60  # iRacing's LapLastLapTime
    assert all(lap["fuel_used_l"] is None or lap["fuel_used_l"] >= 0 for lap in laps)
    text = pitbox("laps", "--db", db).stdout.splitlines()
    assert "INVALID" in text[0]
    assert "15.07" in text[1]


def test_corrupt_ibt_one_line_error(tmp_path: Path) -> None:
    path = real_file("iracing", "ibt", "teamjorge_invalid_test_file.ibt")
    result = pitbox(
        "import", "--quiet", str(path), "--db", f"sqlite:///{tmp_path / 'p.db'}"
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "teamjorge_invalid_test_file.ibt" in lines[0]
    assert "not an iRacing telemetry file" in lines[0]


def test_missing_file(tmp_path: Path) -> None:
    result = pitbox(
        "import", str(tmp_path / "nope.ibt"), "--db", f"sqlite:///{tmp_path / 'p.db'}"
    )
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_laps_carry_input_metrics(tmp_path: Path) -> None:
    path = real_file(
        "iracing", "ibt", "skmodified_martinsville_2015-05-30_20-32-44.ibt"
    )
    db = f"sqlite:///{tmp_path / 'p.db'}"
    assert pitbox("import", "--quiet", str(path), "--db", db).returncode == 0
    laps = json.loads(pitbox("laps", "--json", "--db", db).stdout)
    timed = [lap for lap in laps if lap["time_s"]]
    for lap in timed:
        for key in ("smoothness", "aggression", "precision"):
            assert 0.0 <= lap[key] <= 1.0
    untimed = [lap for lap in laps if lap["time_s"] is None]
    assert all(lap["smoothness"] is None for lap in untimed)


def test_migrations_upgrade_an_old_database(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config

    from pitbox_appliance.storage.database import MIGRATIONS, upgrade

    url = f"sqlite:///{tmp_path / 'old.db'}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0001")
    upgrade(url)
    assert pitbox("laps", "--json", "--db", url).returncode == 0
