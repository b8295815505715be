"""Badge thresholds against real drivers: lap-time consistency and stint slopes in 40 IMSA races.

``pitbox_appliance/coaching/badge_rules.yaml`` sets levels for ``lap_time_sd_s`` (SD of
8 clean green laps) and ``lap_time_slope_s_per_lap`` (the stint's lap-time growth).
The IMSA lap charts under ../shared/data/imsa measure both for professional drivers:

- per driver and race, the best 8-lap SD over runs of consecutive clean green laps
  (not in or out of the pits, same driver, green flag before and at the line);
- per run of at least 10 such laps, the least-squares slope of lap time per lap.

Prints percentiles of both and the share of drivers (or runs) at or better than each
badge level, so the levels can be read as "the best N % of IMSA race drivers".

    .venv/bin/python bench/badge_calibration.py [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import REAL_DATA
from pitbox_appliance.strategy.timing import TimingLap, read_timing_csv

RULES = Path(__file__).resolve().parent.parent / (
    "pitbox_appliance/coaching/badge_rules.yaml"
)
WINDOW = 8  # laps, as the consistency rule
SLOPE_LAPS = 10  # laps, as the tyres rule


def clean_runs(laps: list[TimingLap]) -> list[list[TimingLap]]:
    """Runs of consecutive clean green laps of one driver in one car."""
    runs: list[list[TimingLap]] = []
    run: list[TimingLap] = []
    prev: TimingLap | None = None
    for lap in sorted(laps, key=lambda x: x.lap):
        clean = (
            lap.is_green
            and not lap.in_pit
            and lap.pit_time_s is None
            and lap.lap_time_s is not None
            and (prev is None or (prev.is_green and not prev.in_pit))
        )
        if (
            clean
            and run
            and run[-1].driver == lap.driver
            and lap.lap == run[-1].lap + 1
        ):
            run.append(lap)
        else:
            if len(run) >= WINDOW:
                runs.append(run)
            run = [lap] if clean else []
        prev = lap
    if len(run) >= WINDOW:
        runs.append(run)
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_DATA / "imsa")
    args = parser.parse_args()
    files = sorted(
        p for p in args.data.glob("*race_laps.csv*") if p.suffix in (".csv", ".gz")
    )
    if not files:
        print(
            f"NOTE: no IMSA lap charts under {args.data} (see ../shared/data/README.md)"
        )
        return 0
    best_sd: list[float] = []
    slopes: list[float] = []
    for path in files:
        by_car: dict[str, list[TimingLap]] = {}
        for lap in read_timing_csv(path):
            by_car.setdefault(lap.car, []).append(lap)
        for laps in by_car.values():
            per_driver: dict[str, float] = {}
            for run in clean_runs(laps):
                t = np.array([lap.lap_time_s for lap in run], dtype=np.float64)
                sd = min(
                    float(np.std(t[i : i + WINDOW], ddof=1))
                    for i in range(len(t) - WINDOW + 1)
                )
                driver = run[0].driver
                per_driver[driver] = min(per_driver.get(driver, sd), sd)
                if len(t) >= SLOPE_LAPS:
                    slopes.append(float(np.polyfit(np.arange(len(t)), t, 1)[0]))
            best_sd.extend(per_driver.values())
    rules = {r["metric"]: r for r in yaml.safe_load(RULES.read_text())["rules"]}
    print(f"{len(files)} races; {len(best_sd)} driver-races; {len(slopes)} runs")
    for name, values, metric in (
        ("best 8-lap SD per driver and race (s)", best_sd, "lap_time_sd_s"),
        ("lap-time slope per run (s/lap)", slopes, "lap_time_slope_s_per_lap"),
    ):
        a = np.array(values)
        cuts = {q: round(float(np.percentile(a, q)), 3) for q in (2, 10, 25, 50, 75)}
        print(f"{name}: percentiles {cuts}")
        for level, threshold in rules[metric]["levels"].items():
            share = float(np.mean(a <= threshold))
            print(f"  {level:9s} <= {threshold:<6}: {share:6.1%} reach it")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
