"""Al Kamel lap charts: reading, stints and stops, online predictions, `pitbox timing`."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pitbox_appliance.strategy.command import add_command, lap_rows, run
from pitbox_appliance.strategy.predict import (
    PredictionConfig,
    RacePredictor,
    predict_race,
    race_order,
)
from pitbox_appliance.strategy.stints import (
    StopKind,
    analyse_race,
    classify_stop,
    transit_time,
)
from pitbox_appliance.strategy.timing import (
    TimingFileError,
    TimingLap,
    TrackFlag,
    lap_chart_files,
    lap_chart_name,
    laps_by_car,
    parse_duration,
    parse_timing_text,
    read_timing_csv,
)
from tests.conftest import real_file

# The header exactly as IMSA's files have it: BOM, spaces after commas, trailing comma.
HEADER = (
    "\ufeffNUMBER, DRIVER_NUMBER, LAP_NUMBER, LAP_TIME, LAP_IMPROVEMENT, "
    "CROSSING_FINISH_LINE_IN_PIT, S1, S1_IMPROVEMENT, S2, S2_IMPROVEMENT, S3, "
    "S3_IMPROVEMENT, KPH, ELAPSED, HOUR,S1_LARGE,S2_LARGE,S3_LARGE,TOP_SPEED,"
    "DRIVER_NAME,PIT_TIME,CLASS,GROUP,TEAM,MANUFACTURER,FLAG_AT_FL,"
)
COLUMNS = [name.strip() for name in HEADER.removeprefix("\ufeff").split(",")]
IMSA = ("imsa",)
MID_OHIO = "2021_mid_ohio_race_laps.csv"
WATKINS_2021 = "2021_watkins_glen_6h_race_laps.csv"
WATKINS_2024 = "2024_watkins_glen_6h_race_laps.csv"


def clock(seconds: float) -> str:
    """Al Kamel time text: 55.406, 1:55.406 or 1:02:03.456."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:06.3f}"
    if minutes:
        return f"{minutes}:{secs:06.3f}"
    return f"{secs:.3f}"


def row(**values: Any) -> str:
    return ",".join(str(values.get(name, "")) for name in COLUMNS)


@dataclasses.dataclass
class CarPlan:
    car: str
    pace_s: float
    in_laps: tuple[int, ...]
    drivers: tuple[str, ...]  # one per stint
    pit_s: tuple[float, ...]  # one per stop
    laps: int = 60


def synthetic_chart(
    plans: tuple[CarPlan, ...] = (
        CarPlan("01", 100.0, (20, 40), ("Ann Lee", "Ann Lee", "Bo Ek"), (55.0, 70.0)),
        CarPlan("7", 101.0, (22, 44), ("Cy Do", "Di Fu", "Di Fu"), (68.0, 31.0)),
    ),
    yellow_laps: range = range(30, 33),
) -> str:
    """Two GTD cars, two stops each, one driver change each, a 3-lap yellow."""
    lines = [HEADER]
    for plan in plans:
        elapsed = 0.0
        stint = 0
        for lap in range(1, plan.laps + 1):
            wobble = ((lap * 7) % 5 - 2) * 0.1
            lap_time = plan.pace_s + wobble
            pit_time = ""
            if lap in plan.in_laps:
                lap_time += 8.0  # pit entry
            if lap - 1 in plan.in_laps:
                stop = plan.in_laps.index(lap - 1)
                pit_time = clock(plan.pit_s[stop])
                lap_time += plan.pit_s[stop]
                stint += 1
            if lap in yellow_laps:
                lap_time = plan.pace_s * 1.5
            elapsed += lap_time
            lines.append(
                row(
                    NUMBER=plan.car,
                    DRIVER_NUMBER=stint + 1,
                    LAP_NUMBER=lap,
                    LAP_TIME=clock(lap_time),
                    CROSSING_FINISH_LINE_IN_PIT="B" if lap in plan.in_laps else "",
                    ELAPSED=clock(elapsed),
                    HOUR="14:00:00.000",
                    DRIVER_NAME=plan.drivers[stint],
                    PIT_TIME=pit_time,
                    CLASS="GTD",
                    TEAM=f"Team {plan.car}",
                    FLAG_AT_FL="FCY" if lap in yellow_laps else "GF",
                )
            )
    return "\n".join(lines) + "\n"


@pytest.fixture
def chart(tmp_path: Path) -> Path:
    path = tmp_path / "race.csv"
    path.write_text(synthetic_chart(), encoding="utf-8")
    return path


def timing_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pitbox")
    add_command(parser.add_subparsers(dest="command", required=True))
    return parser


def run_cli(*argv: str) -> int:
    args = timing_parser().parse_args(["timing", *argv])
    assert args.handler is run
    code: int = args.handler(args)
    return code


def truncated(laps: list[TimingLap], until_s: float) -> list[TimingLap]:
    return [lap for lap in laps if lap.elapsed_s <= until_s]


# -- reading -------------------------------------------------------------------


def test_reads_bom_spaces_and_trailing_comma(chart: Path) -> None:
    assert chart.read_bytes().startswith(b"\xef\xbb\xbf")
    laps = read_timing_csv(chart)
    assert len(laps) == 120
    first = laps[0]
    assert (first.car, first.lap, first.driver, first.car_class) == (
        "01",
        1,
        "Ann Lee",
        "GTD",
    )
    assert first.flag is TrackFlag.GREEN
    assert first.is_green
    assert first.lap_time_s == pytest.approx(100.0)
    out_lap = next(lap for lap in laps if lap.car == "01" and lap.lap == 21)
    assert out_lap.pit_time_s == pytest.approx(55.0)
    assert next(lap for lap in laps if lap.car == "01" and lap.lap == 20).in_pit
    yellow = next(lap for lap in laps if lap.lap == 31)
    assert yellow.flag is TrackFlag.FULL_COURSE_YELLOW
    assert yellow.is_neutralised
    assert {lap.car for lap in laps} == {"01", "7"}  # "01" stays a string


def test_reads_semicolon_separated_without_bom() -> None:
    text = synthetic_chart().removeprefix("\ufeff").replace(",", ";")
    laps = parse_timing_text(text)
    assert len(laps) == 120
    assert laps[0].car == "01"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("55.406", 55.406),
        ("1:55.406", 115.406),
        (" 0:01:05.123 ", 65.123),
        ("1:02:03.456", 3723.456),
        ("49:22.516", 2962.516),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1:", "abc", "1:75.0", "-3.0", "1:2:3:4", "nan"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.replace(",3,1:", ",x3,1:", 1), r"race\.csv:4: LAP_NUMBER 'x3'"),
        (lambda s: s.replace("1:39.900", "1:3x.900", 1), r"race\.csv:\d+: LAP_TIME"),
        (lambda s: s.replace(",55.000,GTD", ",55:xx,GTD", 1), r"csv:\d+: PIT_TIME"),
        (lambda s: s.replace(",B,", ",Q,", 1), r"race\.csv:\d+: CROSSING_FINISH"),
        (
            lambda s: s.replace("\n01,1,2,", "\n01,1,2,1:00.000\n01,1,2,", 1),
            r"race\.csv:3: 4 fields",
        ),
        (lambda s: s.replace("FLAG_AT_FL", "FLAG"), r"race\.csv:1: .*FLAG_AT_FL"),
        (lambda s: s + s.splitlines()[3] + "\n", r"race\.csv:\d+: car 01 lap 3 "),
        (lambda s: "\ufeff\n\n", r"race\.csv: empty file"),
        (lambda s: s.splitlines()[0] + "\n", r"race\.csv: header but no laps"),
    ],
)
def test_bad_files_name_file_and_line(
    tmp_path: Path, mutate: Any, message: str
) -> None:
    path = tmp_path / "race.csv"
    path.write_text(mutate(synthetic_chart()), encoding="utf-8")
    with pytest.raises(TimingFileError, match=message):
        read_timing_csv(path)


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "race.csv"
    path.write_bytes(synthetic_chart().encode() + b"01,\xff\xfe\n")
    with pytest.raises(TimingFileError, match=r"race\.csv:122: not UTF-8"):
        read_timing_csv(path)
    with pytest.raises(TimingFileError, match=r"nope\.csv: cannot read"):
        read_timing_csv(tmp_path / "nope.csv")


def test_reads_real_files() -> None:
    for name in (MID_OHIO, WATKINS_2021, WATKINS_2024):
        laps = read_timing_csv(real_file(*IMSA, name))
        cars = laps_by_car(laps)
        assert "01" in cars  # leading zero kept
        assert all(lap.lap_time_s is not None for lap in laps)
        flags = {lap.flag for lap in laps}
        assert {TrackFlag.GREEN, TrackFlag.FULL_COURSE_YELLOW} <= flags
        assert TrackFlag.UNKNOWN not in flags
    mid_ohio = read_timing_csv(real_file(*IMSA, MID_OHIO))
    first = mid_ohio[0]
    assert (first.car, first.lap, first.lap_time_s) == ("01", 1, 115.406)
    assert first.driver == "Kevin Magnussen"


# -- stints and stops ----------------------------------------------------------


def test_stints_and_stops_follow_the_pit_flags(chart: Path) -> None:
    analyses = analyse_race(read_timing_csv(chart))
    car = analyses["01"]
    assert [(s.in_lap, s.out_lap) for s in car.stops] == [(20, 21), (40, 41)]
    assert all(stop.flagged_in_pit for stop in car.stops)
    assert [(s.first_lap, s.last_lap) for s in car.stints] == [
        (1, 20),
        (21, 40),
        (41, 60),
    ]
    assert [s.ended_by_stop for s in car.stints] == [True, True, False]
    assert car.stints[1].neutralised_laps == 3
    assert car.stints[1].green_laps == 17
    assert [s.driver_change for s in car.stops] == [False, True]
    assert car.stint_of_lap()[20] == 1
    assert car.stint_of_lap()[21] == 2
    other = analyses["7"]
    assert [s.driver_change for s in other.stops] == [True, False]
    # Transit time is the 31 s passage; 55 s and 68-70 s are service stops.
    assert [s.kind for s in other.stops] == [StopKind.SERVICE, StopKind.DRIVE_THROUGH]


def test_stop_classification_thresholds() -> None:
    assert transit_time([]) is None
    assert transit_time([80.0, 30.5, 29.4, 61.0, 65.0]) == 29.4
    # No passage well under the median pit time: nobody drove through, so the
    # transit time is unknown and every stop is a service stop.
    assert transit_time([50.0, 60.0, 75.0]) is None
    assert classify_stop(50.0, transit_time([50.0, 60.0, 75.0])) is StopKind.SERVICE
    transit = 30.0
    assert classify_stop(31.9, transit) is StopKind.DRIVE_THROUGH
    assert classify_stop(38.0, transit) is StopKind.SPLASH
    assert classify_stop(43.0, transit) is StopKind.SERVICE
    assert classify_stop(119.0, transit) is StopKind.SERVICE
    assert classify_stop(120.0, transit) is StopKind.LONG
    assert classify_stop(2200.0, None) is StopKind.SERVICE


@pytest.mark.parametrize("name", [MID_OHIO, WATKINS_2021])
def test_real_stops_match_the_b_flags(name: str) -> None:
    """In the 2021 races every stop found is a B lap, and every B lap is found
    except a car's very last lap (retired into the pits: no lap carries a time)."""
    for analysis in analyse_race(read_timing_csv(real_file(*IMSA, name))).values():
        found = {stop.in_lap for stop in analysis.stops}
        flagged = {lap.lap for lap in analysis.laps if lap.in_pit}
        last = analysis.laps[-1].lap
        assert found <= flagged, analysis.car
        assert flagged - found <= {last}, analysis.car


def test_real_red_flag_race_disagreements_are_the_red_flag() -> None:
    """2024 Watkins Glen: the stops that disagree with B are around the red flag."""
    laps = read_timing_csv(real_file(*IMSA, WATKINS_2024))
    found = flagged = agreed = 0
    for analysis in analyse_race(laps).values():
        in_laps = {stop.in_lap for stop in analysis.stops}
        b_laps = {lap.lap for lap in analysis.laps if lap.in_pit}
        found += len(in_laps)
        flagged += len(b_laps)
        agreed += len(in_laps & b_laps)
        for stop in analysis.stops:
            if not stop.flagged_in_pit:
                assert stop.pit_time_s > 600 or stop.in_lap_flag is not TrackFlag.GREEN
    assert agreed / found > 0.85
    assert agreed / flagged > 0.9


def test_real_driver_changes_match_driver_names() -> None:
    for name in (MID_OHIO, WATKINS_2021, WATKINS_2024):
        analyses = analyse_race(read_timing_csv(real_file(*IMSA, name)))
        for analysis in analyses.values():
            laps = analysis.laps
            name_changes = {
                after.lap
                for before, after in itertools.pairwise(laps)
                if before.driver != after.driver
            }
            assert {s.out_lap for s in analysis.driver_changes} == name_changes
        changes = sum(len(a.driver_changes) for a in analyses.values())
        assert changes > 20


# -- predictions ---------------------------------------------------------------


def test_no_look_ahead_synthetic() -> None:
    """Every output field of a lap is unchanged when later laps are deleted.

    A slow car whose stops come early by lap number but late on the clock makes
    any ordering by lap number (instead of by race clock) visible.
    """
    plans = (
        CarPlan("01", 100.0, (20, 40), ("A", "A", "B"), (55.0, 70.0)),
        CarPlan("7", 101.0, (22, 44), ("C", "D", "D"), (68.0, 31.0)),
        CarPlan("99", 135.0, (10, 30), ("E", "F", "E"), (60.0, 62.0), laps=45),
    )
    laps = parse_timing_text(synthetic_chart(plans))
    full = {(r["car"], r["lap"]): r for r in lap_rows(laps, analyse_race(laps))}
    for cutoff in sorted({lap.elapsed_s for lap in laps})[::5]:
        part = truncated(laps, cutoff)
        for row_ in lap_rows(part, analyse_race(part)):
            assert row_ == full[(row_["car"], row_["lap"])], (cutoff, row_)


def test_predictions_are_sensible_synthetic(chart: Path) -> None:
    laps = read_timing_csv(chart)
    by_lap = {(p.car, p.lap): p for p in predict_race(laps)}
    # After car 01's first stop at 20, car 7 stops at 22 (class median 21):
    # car 01 is expected in at about lap 20 + 20.
    early = by_lap[("01", 25)]
    assert early.next_pit_lap is not None
    assert 36 <= early.next_pit_lap <= 44
    assert early.baseline_next_pit_lap is not None
    # Green pace is 100 s ± 0.2 s; the baseline is the median of the last five
    # green laps (laps 11-15 here: racing laps, green at both lines).
    steady = by_lap[("01", 15)]
    assert steady.next_lap_time_s == pytest.approx(100.0, abs=0.3)
    times = {lap.lap: lap.lap_time_s for lap in laps if lap.car == "01"}
    assert steady.baseline_next_lap_time_s == pytest.approx(
        statistics.median(times[n] for n in range(11, 16))
    )
    # The pit baseline repeats the last stint: car 01's first stint was 20 laps.
    assert by_lap[("01", 25)].baseline_next_pit_lap == 40
    # After the yellow the restart lap is slow, the prediction stays at pace.
    assert by_lap[("01", 33)].next_lap_time_s == pytest.approx(100.0, abs=0.3)
    # Under yellow the pit window is open (stint 2 is 10 laps old): pit now.
    assert by_lap[("01", 31)].next_pit_lap == 32


@pytest.mark.parametrize("name", [MID_OHIO, WATKINS_2024])
def test_no_look_ahead_on_real_race(name: str) -> None:
    """Every output field of a lap is unchanged when later laps are deleted."""
    laps = read_timing_csv(real_file(*IMSA, name))
    full = {(row["car"], row["lap"]): row for row in lap_rows(laps, analyse_race(laps))}
    end = max(lap.elapsed_s for lap in laps)
    for fraction in (0.05, 0.3, 0.52, 0.77):
        part = truncated(laps, end * fraction)
        rows = lap_rows(part, analyse_race(part))
        assert len(rows) == len(part)
        for row_ in rows:
            assert row_ == full[(row_["car"], row_["lap"])], (fraction, row_)
    # Deleting one car's later laps changes nothing that ended before them.
    predictions = {(p.car, p.lap): p for p in predict_race(laps)}
    cut_s = next(lap.elapsed_s for lap in laps if lap.car == "01" and lap.lap == 60)
    part = [lap for lap in laps if lap.car != "01" or lap.lap <= 60]
    ended = {(lap.car, lap.lap) for lap in part if lap.elapsed_s <= cut_s}
    compared = 0
    for p in predict_race(part):
        if (p.car, p.lap) in ended:
            assert p == predictions[(p.car, p.lap)], p
            compared += 1
    assert compared > 1000


# -- the command ---------------------------------------------------------------


def test_cli_json(chart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(str(chart), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 120
    keys = {
        "car",
        "lap",
        "driver",
        "stint",
        "in_pit",
        "pit_time_s",
        "predicted_next_pit_lap",
        "predicted_next_lap_time_s",
    }
    assert all(keys <= row_.keys() for row_ in rows)
    car = [row_ for row_ in rows if row_["car"] == "01"]
    assert [row_["lap"] for row_ in car] == list(range(1, 61))
    assert [row_["lap"] for row_ in car if row_["in_pit"]] == [20, 40]
    assert [row_["stint"] for row_ in car][18:22] == [1, 1, 2, 2]
    assert car[20]["pit_time_s"] == pytest.approx(55.0)
    assert car[19]["pit_time_s"] is None
    assert car[40]["driver"] == "Bo Ek"
    assert all(isinstance(row_["predicted_next_pit_lap"], int) for row_ in car)
    assert all(row_["predicted_next_pit_lap"] > row_["lap"] for row_ in car)


def test_cli_tables(chart: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(str(chart)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[0] == "car"
    assert lines[1].split()[:5] == ["01", "GTD", "60", "3", "2"]
    assert run_cli(str(chart), "--car", "7") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 61
    assert "Di Fu" in lines[-1]


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(synthetic_chart().replace(",2,1:", ",two,1:", 1))
    assert run_cli(str(bad), "--json") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pitbox timing: ")
    assert "bad.csv:3" in lines[0]
    assert "LAP_NUMBER" in lines[0]
    assert run_cli(str(tmp_path / "missing.csv")) == 1
    assert "missing.csv" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text(synthetic_chart())
    assert run_cli(str(good), "--car", "99") == 1
    assert "no car '99'" in capsys.readouterr().err


def test_cli_json_on_real_race(capsys: pytest.CaptureFixture[str]) -> None:
    path = real_file(*IMSA, MID_OHIO)
    assert run_cli(str(path), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    laps = read_timing_csv(path)
    assert len(rows) == len(laps)
    b_laps = {(lap.car, lap.lap) for lap in laps if lap.in_pit}
    assert {(r["car"], r["lap"]) for r in rows if r["in_pit"]} == b_laps
    car = [r for r in rows if r["car"] == "01"]
    assert max(r["stint"] for r in car) == 6
    timed = [r for r in rows if r["predicted_next_lap_time_s"] is not None]
    assert len(timed) == len(rows)
    green = [r for r in car if r["flag"] == "green" and not r["in_pit"]]
    assert all(60 < r["predicted_next_lap_time_s"] < 130 for r in green)


def test_pitbox_timing_command_wired(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = real_file("imsa", "2021_mid_ohio_race_laps.csv")
    out = subprocess.run(
        [sys.executable, "-m", "pitbox_appliance.cli", "timing", str(path), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = json.loads(out.stdout)
    keys = {
        "car",
        "lap",
        "driver",
        "stint",
        "in_pit",
        "pit_time_s",
        "predicted_next_pit_lap",
        "predicted_next_lap_time_s",
    }
    assert keys <= set(rows[0])
    assert any(row["in_pit"] for row in rows)


# -- gzipped lap charts ----------------------------------------------------------


def test_reads_gzipped_chart_as_the_plain_one(tmp_path: Path) -> None:
    import gzip

    text = synthetic_chart()
    plain = tmp_path / "2021_x_race_laps.csv"
    plain.write_text(text, encoding="utf-8")
    packed = tmp_path / "2021_x_race_laps.csv.gz"
    packed.write_bytes(gzip.compress(text.encode("utf-8")))
    laps = read_timing_csv(packed)
    assert [dataclasses.astuple(x) for x in laps] == [
        dataclasses.astuple(x) for x in read_timing_csv(plain)
    ]
    assert lap_chart_files(tmp_path) == [plain, packed]
    assert lap_chart_name(packed) == lap_chart_name(plain) == "2021_x"


def test_bad_gzip_names_the_file(tmp_path: Path) -> None:
    import gzip

    broken = tmp_path / "race_laps.csv.gz"
    broken.write_bytes(gzip.compress(synthetic_chart().encode())[:200])
    with pytest.raises(TimingFileError, match=r"race_laps\.csv\.gz: not a readable"):
        read_timing_csv(broken)
    not_gzip = tmp_path / "other.csv.gz"
    not_gzip.write_text(synthetic_chart())
    with pytest.raises(TimingFileError, match=r"other\.csv\.gz: not a readable gzip"):
        read_timing_csv(not_gzip)
    latin = tmp_path / "latin.csv.gz"
    latin.write_bytes(gzip.compress(synthetic_chart().encode() + b"01,\xe9\n"))
    with pytest.raises(TimingFileError, match=r"latin\.csv\.gz:122: not UTF-8"):
        read_timing_csv(latin)


def test_reads_all_real_lap_charts() -> None:
    """Every IMSA race of ../shared/data, plain and gzipped, reads with flags known."""
    folder = real_file(*IMSA)
    files = lap_chart_files(folder)
    gzipped = [path for path in files if path.name.endswith(".gz")]
    assert len(files) >= 40
    assert len(gzipped) >= 37
    for path in files:
        laps = read_timing_csv(path)
        assert len(laps_by_car(laps)) >= 10, path
        flags = {lap.flag for lap in laps}
        assert TrackFlag.GREEN in flags, path
        assert TrackFlag.UNKNOWN not in flags, path
        assert sum(lap.in_pit for lap in laps) > 0, path


def test_cli_reads_gzipped_real_race(capsys: pytest.CaptureFixture[str]) -> None:
    path = real_file(*IMSA, "2023_lime-rock-park_202307221210_race_laps.csv.gz")
    assert run_cli(str(path), "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(read_timing_csv(path))
    assert any(r["flag"] == "fcy" for r in rows)


def test_under_yellow_the_field_sets_the_next_lap_time(chart: Path) -> None:
    """A neutralised lap predicts the median of the field's recent yellow laps."""
    laps = read_timing_csv(chart)
    by_lap = {(p.car, p.lap): p for p in predict_race(laps)}
    window = PredictionConfig().yellow_field_window_s
    assert window is not None
    yellow = [lap for lap in laps if lap.is_neutralised and not lap.in_pit]
    assert yellow
    for lap in yellow:
        recent = [
            x.lap_time_s
            for x in yellow
            if lap.elapsed_s - window <= x.elapsed_s <= lap.elapsed_s
            and x.pit_time_s is None
        ]
        prediction = by_lap[(lap.car, lap.lap)].next_lap_time_s
        assert prediction == pytest.approx(statistics.median(recent)), lap
    # Without the field window the car's own last yellow lap is repeated.
    own = RacePredictor(replace(PredictionConfig(), yellow_field_window_s=None))
    own_by_lap = {
        (p.car, p.lap): p for p in (own.observe(lap) for lap in race_order(laps))
    }
    assert all(
        own_by_lap[(lap.car, lap.lap)].next_lap_time_s == lap.lap_time_s
        for lap in yellow
    )


def test_censored_median_counts_running_stints_as_lower_bounds() -> None:
    from pitbox_appliance.strategy.predict import _censored_median

    # Nothing running: the plain median of the stints longer than ``after``.
    assert _censored_median([10, 20, 30, 40, 50], [], 0) == 30
    assert _censored_median([10, 20, 30, 40, 50], [], 25) == 40
    # Early in a race only short stints have ended; many longer ones still run.
    ended = [8.0, 9.0, 10.0]
    running = [12.0, 13.0, 14.0, 15.0, 16.0, 17.0]
    assert statistics.median(ended) == 9.0
    assert _censored_median(ended, running, 0) == 17.0  # most outlast every end
    # Running stints shorter than an ended one do not change its weight.
    assert _censored_median([20.0, 30.0, 40.0], [5.0, 6.0], 0) == 30.0
    # Conditioning: only lengths over ``after`` count.
    assert _censored_median([20.0, 30.0, 40.0], [35.0], 25) == 40.0
