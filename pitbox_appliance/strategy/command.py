"""The ``pitbox timing`` subcommand: stints, stops and online predictions of a lap chart."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from pitbox_appliance.strategy.predict import predict_race
from pitbox_appliance.strategy.stints import CarAnalysis, analyse_race
from pitbox_appliance.strategy.timing import (
    TimingFileError,
    TimingLap,
    read_timing_csv,
)

PROG = "pitbox timing"


def add_command(sub: Any) -> None:
    """Add ``timing`` to an argparse subparsers object (``handler`` runs it)."""
    parser = sub.add_parser(
        "timing",
        help="stints, pit stops and predictions from an Al Kamel lap chart CSV",
        description=(
            "Reads an IMSA/WEC/ELMS lap-by-lap timing CSV (Al Kamel format; plain "
            "or gzipped, .csv or .csv.gz) and "
            "prints, per car and lap, the stint, pit stops and the next pit lap and "
            "lap time predicted with only the laps up to that one."
        ),
    )
    parser.add_argument(
        "file", type=Path, metavar="FILE.csv[.gz]", help="lap chart CSV (or .csv.gz)"
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON object per car and lap"
    )
    parser.add_argument("--car", help="only this car number (as written, e.g. 01)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the command; 0 on success, 1 (one line on stderr) on a bad file or car."""
    try:
        laps = read_timing_csv(args.file)
    except TimingFileError as exc:
        sys.stderr.write(f"{PROG}: {exc}\n")
        return 1
    analyses = analyse_race(laps)
    rows = lap_rows(laps, analyses)
    car = getattr(args, "car", None)
    if car is not None:
        # Predictions still use the whole field (class fallbacks, transit time).
        if car not in analyses:
            sys.stderr.write(f"{PROG}: {args.file}: no car {car!r} in the file\n")
            return 1
        rows = [row for row in rows if row["car"] == car]
    if args.json:
        sys.stdout.write(json.dumps(rows, indent=1, ensure_ascii=False) + "\n")
    elif car is not None:
        sys.stdout.write(lap_table(rows))
    else:
        sys.stdout.write(car_table(analyses, rows))
    return 0


def lap_rows(
    laps: list[TimingLap], analyses: dict[str, CarAnalysis]
) -> list[dict[str, Any]]:
    """One JSON-ready object per car and lap, cars in file order, laps in order.

    Every field of a lap depends only on laps that ended by then: ``pit_time_s``
    sits on the out-lap, where the timing reports it, and the stint number
    changes on the out-lap.
    """
    predictions = {(p.car, p.lap): p for p in predict_race(laps)}
    rows: list[dict[str, Any]] = []
    for car, analysis in analyses.items():
        stint_of_lap = analysis.stint_of_lap()
        for lap in analysis.laps:
            prediction = predictions[(car, lap.lap)]
            next_lap_time = prediction.next_lap_time_s
            rows.append(
                {
                    "car": car,
                    "lap": lap.lap,
                    "driver": lap.driver,
                    "stint": stint_of_lap[lap.lap],
                    "in_pit": lap.in_pit,
                    "pit_time_s": lap.pit_time_s,
                    "predicted_next_pit_lap": prediction.next_pit_lap,
                    "predicted_next_lap_time_s": (
                        round(next_lap_time, 3) if next_lap_time is not None else None
                    ),
                    "lap_time_s": lap.lap_time_s,
                    "flag": lap.flag.value,
                }
            )
    return rows


def car_table(analyses: dict[str, CarAnalysis], rows: list[dict[str, Any]]) -> str:
    """One line per car: stints, stops by kind, and the predictions after its last lap."""
    last_row = {row["car"]: row for row in rows}
    lines = [
        f"{'car':>5} {'class':<7} {'laps':>4} {'stints':>6} {'stops':>5} "
        f"{'drv chg':>7}  {'stop kinds':<34} {'next pit':>8} {'next lap s':>10}"
    ]
    for car, analysis in analyses.items():
        kinds = Counter(stop.kind.value for stop in analysis.stops)
        kinds_text = " ".join(f"{kind}={n}" for kind, n in sorted(kinds.items()))
        row = last_row[car]
        lines.append(
            f"{car:>5} {analysis.car_class:<7} {len(analysis.laps):>4} "
            f"{len(analysis.stints):>6} {len(analysis.stops):>5} "
            f"{len(analysis.driver_changes):>7}  {kinds_text:<34} "
            f"{_text(row['predicted_next_pit_lap']):>8} "
            f"{_text(row['predicted_next_lap_time_s']):>10}"
        )
    return "\n".join(lines) + "\n"


def lap_table(rows: list[dict[str, Any]]) -> str:
    """One line per lap (for a single car)."""
    lines = [
        f"{'car':>5} {'lap':>4} {'stint':>5} {'flag':<6} {'pit':<3} {'pit s':>7} "
        f"{'lap s':>8} {'next pit':>8} {'next lap s':>10}  driver"
    ]
    for row in rows:
        lines.append(
            f"{row['car']:>5} {row['lap']:>4} {row['stint']:>5} {row['flag']:<6} "
            f"{'in' if row['in_pit'] else '':<3} {_text(row['pit_time_s']):>7} "
            f"{_text(row['lap_time_s']):>8} {_text(row['predicted_next_pit_lap']):>8} "
            f"{_text(row['predicted_next_lap_time_s']):>10}  {row['driver']}"
        )
    return "\n".join(lines) + "\n"


def _text(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if value < 100 else f"{value:.1f}"
