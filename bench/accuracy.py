"""Accuracy of the timing analysis, the online predictors, fuel per lap and the detectors.

For each lap chart in ../shared/data/imsa (40 IMSA races 2021-2024, .csv and
.csv.gz) it measures:

  * pit stops found (from pit times alone) against the timing's own "lap ends in the
    pit lane" flag (``B``), and driver changes at stops against DRIVER_NAME changes;
  * the mean absolute error of the predicted next pit lap and next lap time, made at
    the end of every lap with only the laps up to it, beside the naive baselines,
    on green laps, under yellow and on all laps, per race and pooled, plus a few
    variants of our predictors. Race by race: the rules' few settings were chosen
    on the 2021-2022 races; the 2023-2024 races are held out and the goals are
    judged on them (the median held-out race);

On the real .ibt files in ../shared/data/iracing/ibt it measures fuel per lap (the
segmenter's, and the strategy's prediction) against the fuel drop iRacing's own lap
counter shows. The detectors' scores (REAL and SIMULATED) are
bench/detector_accuracy.py's block; ``--sim-seeds N`` still renders the old
simulated-only section here. It writes the tables to docs/accuracy.md, keeping any
block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` that another
script wrote there (bench/track_outline_accuracy.py's, for one).

    .venv/bin/python bench/accuracy.py [--data DIR] [--out docs/accuracy.md]
        [--sim-laps 150] [--sim-seeds 0]
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from _common import REAL_DATA, REPO, machine

from driver_pc.adapters.ibt_file import IbtError, IbtReader
from pitbox_appliance.analysis.segmentation import LapSegmenter
from pitbox_appliance.strategy.fuel import LapFuel, RaceLength, plan_fuel
from pitbox_appliance.strategy.predict import (
    LapPrediction,
    PredictionConfig,
    is_racing_lap,
    predict_race,
)
from pitbox_appliance.strategy.stints import (
    SPLASH_MAX_EXCESS_S,
    CarAnalysis,
    StopKind,
    analyse_race,
    transit_time,
)
from pitbox_appliance.strategy.timing import (
    TimingLap,
    lap_chart_files,
    lap_chart_name,
    laps_by_car,
    read_timing_csv,
)
from training.detector_scoring import Counts, RaceScore, simulate_and_score

COMMAND = ".venv/bin/python bench/accuracy.py"
# Simulated races for the detector scores: a 6-car field; incident and fatigue rates
# ×2 (fatigue time constant 45 min) so races of 150 laps (~66 min) cover the range.
SIM_SEEDS = (21, 22, 23, 24, 25)
SIM_LAPS = 150
SIM: dict[str, Any] = {
    "opponents": 5,
    "incidents": 2.0,
    "fatigue": 2.0,
    "stints_per_driver": 3,
    "grid_position": 3,
}
PACE_LAPS = 3  # racing laps either side of a stop for its pace change
PACE_SEARCH_LAPS = 12  # ... found within this many laps of it
TIE_PERCENT = 1.0  # MAE differences under this are called a tie
EXCESS_BANDS = ((0, 2), (2, 13), (13, 25), (25, 35), (35, 45), (45, 90), (90, 600))
# The predictors' settings were chosen on these seasons' races; later ones are held out.
TUNING_SEASONS = ("2021", "2022")
# DESIGN/issue 13 goals, judged on the median held-out race.
GOAL_PIT_MAE_LAPS = 2.0
GOAL_LAP_TIME_REDUCTION = 0.40

NEAR_STOP_LAPS = 5  # the laps in which the call to pit is made
FLAG_KEY = "flag:"  # lap-time errors by flag transition, beside the splits
# key: (quantity, split, unit)
SPLITS = {
    "pit_green": ("next pit lap", "green", "laps"),
    "pit_yellow": ("next pit lap", "yellow", "laps"),
    "pit_all": ("next pit lap", "all", "laps"),
    "pit_near": ("next pit lap", f"last {NEAR_STOP_LAPS} laps before the stop", "laps"),
    "lap_steady": ("next lap time", "steady", "s"),
    "lap_green": ("next lap time", "green", "s"),
    "lap_yellow": ("next lap time", "yellow", "s"),
    "lap_all": ("next lap time", "all", "s"),
}
DEFAULTS = PredictionConfig()
# Variants of our predictors, each beside the defaults on the splits it changes.
ABLATIONS: tuple[tuple[str, PredictionConfig, tuple[str, ...]], ...] = (
    (
        "stint trend term on (Theil–Sen over the stint's racing laps, from 6 laps)",
        replace(DEFAULTS, trend_min_laps=6),
        ("lap_steady", "lap_green", "lap_all"),
    ),
    (
        "pace = median of the last 8 racing laps only (no last-lap blend)",
        replace(DEFAULTS, last_lap_weight=0.0),
        ("lap_steady", "lap_green", "lap_all"),
    ),
    (
        "plain median of completed stints (not conditioned on the stint so far)",
        replace(DEFAULTS, conditional=False),
        ("pit_green", "pit_all"),
    ),
    (
        "yellow laps count half a lap of fuel (factor 0.5 instead of 1.0)",
        replace(DEFAULTS, yellow_fuel_factor=0.5),
        ("pit_green", "pit_all"),
    ),
    (
        "class stints: plain conditional median (running stints not counted)",
        replace(DEFAULTS, censored=False),
        ("pit_green", "pit_all"),
    ),
    (
        "no pit-under-yellow rule",
        replace(DEFAULTS, yellow_window_fraction=None),
        ("pit_yellow", "pit_all"),
    ),
    (
        "under yellow: the car's own last lap (not the field's last 40 s)",
        replace(DEFAULTS, yellow_field_window_s=None),
        ("lap_yellow", "lap_all"),
    ),
)


@dataclass
class Errors:
    """Absolute errors of one predictor and its baseline on the same laps."""

    ours: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    def add(self, ours: float, baseline: float) -> None:
        self.ours.append(abs(ours))
        self.baseline.append(abs(baseline))

    def extend(self, other: Errors) -> None:
        self.ours += other.ours
        self.baseline += other.baseline


@dataclass
class Detection:
    """Found items against reference items."""

    found: set[tuple[str, int]] = field(default_factory=set)
    reference: set[tuple[str, int]] = field(default_factory=set)

    @property
    def hits(self) -> int:
        return len(self.found & self.reference)

    def precision(self) -> float:
        return self.hits / len(self.found) if self.found else float("nan")

    def recall(self) -> float:
        return self.hits / len(self.reference) if self.reference else float("nan")


@dataclass
class RaceResult:
    name: str
    held_out: bool
    cars: int
    laps: int
    stops: Detection
    driver_changes: Detection
    kinds: Counter[StopKind]
    transit_s: float | None
    disagreements: Counter[str]
    errors: dict[str, Errors]
    stop_evidence: list[StopEvidence]

    @property
    def transitions(self) -> dict[str, Errors]:
        """Lap-time errors by flag transition (keys ``flag:...``)."""
        return {k: e for k, e in self.errors.items() if k.startswith(FLAG_KEY)}


@dataclass(frozen=True)
class StopEvidence:
    """A stop's excess over the transit time and the pace change across it."""

    excess_s: float
    driver_change: bool
    pace_change_s: float | None  # median of 3 racing laps after minus before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REAL_DATA / "imsa")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "accuracy.md")
    parser.add_argument("--sim-laps", type=int, default=SIM_LAPS)
    # The detectors: bench/detector_accuracy.py (issue 13 §3); 0 keeps its block alone.
    parser.add_argument("--sim-seeds", type=int, default=0)
    args = parser.parse_args()
    files = lap_chart_files(args.data) if args.data.is_dir() else []
    if not files:
        print(f"no IMSA lap charts in {args.data} (see ../shared/data/README.md)")
        return 1
    races = [(path, read_timing_csv(path)) for path in files]
    results = []
    for path, laps in races:
        print(f"{lap_chart_name(path)}: {len(laps)} laps", flush=True)
        results.append(evaluate(path, laps, DEFAULTS))
    ablations = [
        (label, keys, _pool(prediction_errors(laps, config) for _, laps in races))
        for label, config, keys in ABLATIONS
    ]
    report = render(results, ablations, machine())
    report += render_fuel(real_fuel(REAL_DATA / "iracing" / "ibt"))
    seeds = SIM_SEEDS[: args.sim_seeds]
    scores = []
    for seed in seeds:
        print(f"simulating race seed {seed} ({args.sim_laps} laps) ...", flush=True)
        scores.append(
            simulate_and_score(f"seed {seed}", laps=args.sim_laps, seed=seed, **SIM)
        )
    if scores:  # --sim-seeds 0: the timing and fuel tables only
        report += render_detectors(scores, args.sim_laps)
    old = args.out.read_text() if args.out.is_file() else ""
    report = keep_marked_blocks(old, report)
    args.out.write_text(report)
    print(report)
    print(f"written to {args.out}")
    return 0


def evaluate(path: Path, laps: list[TimingLap], config: PredictionConfig) -> RaceResult:
    """Every measurement on one lap chart."""
    analyses = analyse_race(laps)
    stops, changes, disagreements = detection(analyses)
    all_stops = [stop for analysis in analyses.values() for stop in analysis.stops]
    name = lap_chart_name(path)
    return RaceResult(
        name=name,
        held_out=not name.startswith(TUNING_SEASONS),
        cars=len(analyses),
        laps=len(laps),
        stops=stops,
        driver_changes=changes,
        kinds=Counter(stop.kind for stop in all_stops),
        transit_s=transit_time(stop.pit_time_s for stop in all_stops),
        disagreements=disagreements,
        errors=prediction_errors(laps, config),
        stop_evidence=stop_evidence(analyses),
    )


def stop_evidence(analyses: dict[str, CarAnalysis]) -> list[StopEvidence]:
    """Excess and pace change of every stop, when the race's transit is known."""
    all_stops = [stop for analysis in analyses.values() for stop in analysis.stops]
    transit = transit_time(stop.pit_time_s for stop in all_stops)
    if transit is None:
        return []
    evidence = []
    for analysis in analyses.values():
        laps = analysis.laps
        index = {lap.lap: i for i, lap in enumerate(laps)}
        racing = [
            lap.lap_time_s if i > 0 and is_racing_lap(lap, laps[i - 1]) else None
            for i, lap in enumerate(laps)
        ]
        for stop in analysis.stops:
            i_in, i_out = index[stop.in_lap], index[stop.out_lap]
            before = [
                t
                for i in range(i_in - 1, max(-1, i_in - PACE_SEARCH_LAPS), -1)
                if (t := racing[i]) is not None
            ][:PACE_LAPS]
            after = [
                t
                for i in range(i_out + 1, min(len(laps), i_out + PACE_SEARCH_LAPS))
                if (t := racing[i]) is not None
            ][:PACE_LAPS]
            change = None
            if len(before) == PACE_LAPS and len(after) == PACE_LAPS:
                change = float(np.median(after) - np.median(before))
            evidence.append(
                StopEvidence(stop.pit_time_s - transit, stop.driver_change, change)
            )
    return evidence


def detection(
    analyses: dict[str, CarAnalysis],
) -> tuple[Detection, Detection, Counter[str]]:
    """Stops (by in-lap) against B laps; driver changes against name changes."""
    stops, changes = Detection(), Detection()
    disagreements: Counter[str] = Counter()
    for analysis in analyses.values():
        laps = analysis.laps
        found = {stop.in_lap for stop in analysis.stops}
        stops.found |= {(analysis.car, lap) for lap in found}
        stops.reference |= {(analysis.car, lap.lap) for lap in laps if lap.in_pit}
        changes.found |= {
            (analysis.car, stop.out_lap) for stop in analysis.driver_changes
        }
        changes.reference |= {
            (analysis.car, after.lap)
            for before, after in itertools.pairwise(laps)
            if before.driver != after.driver
        }
        for index, lap in enumerate(laps):
            if lap.in_pit and lap.lap not in found:
                disagreements[_why_missed(laps, index)] += 1
            if lap.lap in found and not lap.in_pit:
                disagreements[_why_extra(laps, index)] += 1
    return stops, changes, disagreements


def _why_missed(laps: tuple[TimingLap, ...], index: int) -> str:
    prefix = "B lap not found as a stop: "
    if index == len(laps) - 1:
        return prefix + "the car's last lap (retired into the pits)"
    if laps[index + 1].in_pit:
        return prefix + "first of two pit-lane passages in a row"
    return prefix + "no pit time on the next lap"


def _why_extra(laps: tuple[TimingLap, ...], index: int) -> str:
    prefix = "stop found on a lap without B: "
    pit_time = laps[index + 1].pit_time_s or 0.0
    if pit_time > 600:
        return prefix + "pit time over 10 min (red-flag hold)"
    return prefix + "pit time on the next lap"


def prediction_errors(
    laps: list[TimingLap], config: PredictionConfig
) -> dict[str, Errors]:
    """Absolute errors per split of our predictors and the baselines on one race."""
    predictions = {(p.car, p.lap): p for p in predict_race(laps, config)}
    errors = {key: Errors() for key in SPLITS}
    for car_laps in laps_by_car(laps).values():
        _score_car(car_laps, predictions, errors)
    return errors


def _score_car(
    car_laps: list[TimingLap],
    predictions: dict[tuple[str, int], LapPrediction],
    errors: dict[str, Errors],
) -> None:
    """One car's errors. Truth: the car's next B lap; the car's next lap time."""
    pit_laps = [lap.lap for lap in car_laps if lap.in_pit]
    for index, lap in enumerate(car_laps):
        prediction = predictions[(lap.car, lap.lap)]
        next_pit = next((n for n in pit_laps if n > lap.lap), None)
        if (
            next_pit is not None
            and prediction.next_pit_lap is not None
            and prediction.baseline_next_pit_lap is not None
        ):
            ours = prediction.next_pit_lap - next_pit
            base = prediction.baseline_next_pit_lap - next_pit
            errors["pit_all"].add(ours, base)
            if lap.is_green:
                errors["pit_green"].add(ours, base)
            elif lap.is_neutralised:
                errors["pit_yellow"].add(ours, base)
            if next_pit - lap.lap <= NEAR_STOP_LAPS:
                errors["pit_near"].add(ours, base)
        if index + 1 == len(car_laps):
            continue
        target = car_laps[index + 1]
        if (
            target.lap_time_s is None
            or prediction.next_lap_time_s is None
            or prediction.baseline_next_lap_time_s is None
        ):
            continue
        ours_s = prediction.next_lap_time_s - target.lap_time_s
        base_s = prediction.baseline_next_lap_time_s - target.lap_time_s
        errors["lap_all"].add(ours_s, base_s)
        errors.setdefault(FLAG_KEY + _transition(lap, target), Errors()).add(
            ours_s, base_s
        )
        if lap.is_neutralised:
            errors["lap_yellow"].add(ours_s, base_s)
        if is_racing_lap(target, lap):
            errors["lap_green"].add(ours_s, base_s)
            if index > 0 and is_racing_lap(lap, car_laps[index - 1]):
                errors["lap_steady"].add(ours_s, base_s)


def _transition(lap: TimingLap, target: TimingLap) -> str:
    """``green → yellow p``: flags of the lap just ended and the next (p: pit lane)."""

    def flag(x: TimingLap, pit: bool) -> str:
        name = "yellow" if x.is_neutralised else "green"
        return name + (" p" if pit else "")

    return (
        f"{flag(lap, lap.in_pit)} → "
        f"{flag(target, target.in_pit or target.pit_time_s is not None)}"
    )


def _pool(per_race: Iterable[dict[str, Errors]]) -> dict[str, Errors]:
    pooled = {key: Errors() for key in SPLITS}
    for errors in per_race:
        for key, e in errors.items():
            pooled.setdefault(key, Errors()).extend(e)
    return pooled


def _pool_transitions(per_race: Iterable[dict[str, Errors]]) -> dict[str, Errors]:
    pooled: dict[str, Errors] = {}
    for errors in per_race:
        for key, e in errors.items():
            pooled.setdefault(key.removeprefix(FLAG_KEY), Errors()).extend(e)
    return pooled


MARKED_BLOCK = re.compile(
    r"<!-- (?P<name>[\w.-]+):start -->.*?<!-- (?P=name):end -->", re.DOTALL
)


def keep_marked_blocks(old: str, new: str) -> str:
    """``new`` with every marked block of ``old`` that ``new`` lacks, appended.

    Other scripts own the blocks between ``<!-- NAME:start -->`` and
    ``<!-- NAME:end -->`` (bench/track_outline_accuracy.py's, for one); a block
    ``new`` has itself is ``new``'s.
    """
    kept = [
        match.group(0)
        for match in MARKED_BLOCK.finditer(old)
        if f"<!-- {match.group('name')}:start -->" not in new
    ]
    if not kept:
        return new
    return new.rstrip("\n") + "\n\n" + "\n\n".join(kept) + "\n"


def render(
    results: list[RaceResult],
    ablations: list[tuple[str, tuple[str, ...], dict[str, Errors]]],
    machine_line: str,
) -> str:
    """The accuracy document."""
    out: list[str] = []
    w = out.append
    w("# Accuracy: timing analysis and predictions, fuel per lap, detectors")
    w("")
    w(f"Produced by `{COMMAND}`, which writes this file. Data: `../shared/data/imsa/`")
    w("(IMSA lap charts, Al Kamel format). Rules and thresholds: `docs/strategy.md`.")
    w("")
    w(f"Run: {machine_line}")
    w("")
    w("## Pit stops and driver changes against the timing's own flags")
    w("")
    w("Stops are found from pit times alone (the lap before the one carrying a pit")
    w("time is the in-lap) and compared with the laps the timing flags as ending in")
    w("the pit lane (`CROSSING_FINISH_LINE_IN_PIT = B`). Driver changes are stops")
    w("whose in- and out-lap drivers differ, compared with every change of")
    w("`DRIVER_NAME` between consecutive laps.")
    w("")
    w(
        "| race | cars | laps | B laps | stops found | stop precision | stop recall "
        "| name changes | driver changes found | change precision | change recall |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        w(
            f"| {r.name} | {r.cars} | {r.laps} | {len(r.stops.reference)} "
            f"| {len(r.stops.found)} | {_pct(r.stops.precision())} "
            f"| {_pct(r.stops.recall())} | {len(r.driver_changes.reference)} "
            f"| {len(r.driver_changes.found)} "
            f"| {_pct(r.driver_changes.precision())} "
            f"| {_pct(r.driver_changes.recall())} |"
        )
    w("")
    w("Every disagreement, by cause:")
    w("")
    for r in results:
        for reason, count in sorted(r.disagreements.items()):
            w(f"- {r.name}: {reason}: {count}")
    w("")
    w("Stops by kind (pit-lane time over the race's transit time; docs/strategy.md):")
    w("")
    kinds = list(StopKind)
    w("| race | transit time | " + " | ".join(k.value for k in kinds) + " |")
    w("|---|---:|" + "---:|" * len(kinds))
    for r in results:
        transit = f"{r.transit_s:.1f} s" if r.transit_s is not None else "-"
        counts = " | ".join(str(r.kinds.get(k, 0)) for k in kinds)
        w(f"| {r.name} | {transit} | {counts} |")
    w("")
    render_stop_evidence(w, results)
    render_predictions(w, results, ablations)
    return "\n".join(out)


def render_predictions(
    w: Callable[[str], None],
    results: list[RaceResult],
    ablations: list[tuple[str, tuple[str, ...], dict[str, Errors]]],
) -> None:
    """Per race, pooled and median-race errors of our predictors and the baselines."""
    tuning = [r for r in results if not r.held_out]
    held_out = [r for r in results if r.held_out]
    w("## Predictions against naive baselines, race by race")
    w("")
    w("Made at the end of every lap of every car with only the laps that had ended by")
    w("then on the race clock (tests/pitbox_appliance/strategy/test_timing.py checks")
    w("this by truncating the input). Evaluation is by race, never by shuffling laps:")
    w(
        f"the rules' few settings were chosen on the {len(tuning)} races of "
        f"{'-'.join(TUNING_SEASONS)}; the {len(held_out)} races of later seasons are"
    )
    w("**held out** and the goals are judged on them.")
    w("")
    w("*Next pit lap*: the truth is the car's next B lap (laps after a car's last B")
    w("lap are not scored). Baseline: the same stint length as last time (the car's")
    w("last pit lap + its last stint's laps; before its first stop, the mean of every")
    w("car's completed stints so far, 30 before any), never before the next lap.")
    w("*Next lap time*: the truth is the car's next lap time; baseline: the median of")
    w("the car's last five green laps (racing laps: green at both lines, no pit lane).")
    w("")
    w("Splits, by the flag when the prediction is made (`FLAG_AT_FL` of the lap just")
    w("ended; the charts carry GF, FCY and FF only, red flags show as FCY laps with a")
    w("pit-lane hold): pit lap *green* / *yellow* / *all*; lap time *steady* = the")
    w("lap just ended and the next are racing laps, *green* = the next is a racing")
    w("lap, *yellow* = the lap just ended was under FCY, *all* = every lap, in- and")
    w("out-laps and red-flag holds included.")
    w("")
    pooled_held = _pool(r.errors for r in held_out)
    w("### Goals (the median held-out race)")
    w("")
    for line in goal_lines(held_out, pooled_held):
        w(line)
    w("")
    w("### Pooled")
    w("")
    w(
        "| races | quantity | split | n | ours MAE | baseline MAE | ours median AE "
        "| baseline median AE | better (MAE) |"
    )
    w("|---|---|---|---:|---:|---:|---:|---:|---|")
    for label, group in (
        (f"held out ({len(held_out)})", held_out),
        (f"tuning ({len(tuning)})", tuning),
        (f"all {len(results)}", results),
    ):
        pooled = _pool(r.errors for r in group)
        for key in SPLITS:
            w(_error_row(label, key, pooled[key]))
    w("")
    w(_verdict("MAE, the held-out races pooled", pooled_held))
    w("")
    w("### Per race (MAE; ours / baseline)")
    w("")
    keys = (
        "pit_all",
        "pit_yellow",
        "pit_near",
        "lap_all",
        "lap_yellow",
        "lap_green",
        "lap_steady",
    )
    w(
        "| race | set | "
        + " | ".join(f"{SPLITS[k][0]} {SPLITS[k][1]}" for k in keys)
        + " |"
    )
    w("|---|---|" + "---:|" * len(keys))
    for r in results:
        cells = []
        for key in keys:
            e = r.errors[key]
            digits = _digits(SPLITS[key][2])
            cells.append(
                f"{np.mean(e.ours):.{digits}f} / {np.mean(e.baseline):.{digits}f}"
                if e.ours
                else "-"
            )
        w(
            f"| {r.name} | {'held out' if r.held_out else 'tuning'} | "
            + " | ".join(cells)
            + " |"
        )
    w("")
    w("### Where the lap-time error is (held-out races, by flag of the lap just")
    w("ended → the next lap; p = in- or out-lap)")
    w("")
    w("| transition | n | ours MAE s | baseline MAE s | share of our total error |")
    w("|---|---:|---:|---:|---:|")
    transitions = _pool_transitions(r.transitions for r in held_out)
    total = sum(sum(e.ours) for e in transitions.values()) or 1.0
    for name, e in sorted(transitions.items(), key=lambda kv: -sum(kv[1].ours)):
        w(
            f"| {name} | {len(e.ours)} | {np.mean(e.ours):.2f} "
            f"| {np.mean(e.baseline):.2f} | {sum(e.ours) / total * 100:.1f} % |"
        )
    w("")
    w("Under yellow the next lap is predicted as the median of the field's laps that")
    w("ended neutralised in the last 40 s (every car follows the same pace car), and")
    w("the pit-lap predictor expects a stop on the next lap once the stint is past")
    w("30 % of the class's median stint (teams take the cheap stop under yellow).")
    w("What remains is mostly what no lap chart can foresee: when a yellow starts or")
    w("ends, and how long a stop (repair, hold, driver change) lasts.")
    w("")
    w("## Variants of our predictors (all races pooled, MAE)")
    w("")
    pooled = _pool(r.errors for r in results)
    w("| variant | quantity | split | defaults | variant | baseline |")
    w("|---|---|---|---:|---:|---:|")
    for label, keys_, errors in ablations:
        for key in keys_:
            quantity, split, unit = SPLITS[key]
            digits = _digits(unit)
            w(
                f"| {label} | {quantity} | {split} "
                f"| {np.mean(pooled[key].ours):.{digits}f} {unit} "
                f"| {np.mean(errors[key].ours):.{digits}f} {unit} "
                f"| {np.mean(errors[key].baseline):.{digits}f} {unit} |"
            )
    w("")


def goal_lines(held_out: list[RaceResult], pooled: dict[str, Errors]) -> list[str]:
    """The issue's two goals against the held-out races, met or not, with figures."""
    lines = []
    for key in ("pit_all", "pit_yellow", "pit_near"):
        scored = [r.errors[key] for r in held_out if r.errors[key].ours]
        if not scored:
            continue
        median_pit = float(np.median([np.mean(e.ours) for e in scored]))
        median_base = float(np.median([np.mean(e.baseline) for e in scored]))
        met = "met" if median_pit <= GOAL_PIT_MAE_LAPS else "**not met**"
        _, split, _ = SPLITS[key]
        lines.append(
            f"- Next pit lap ({split}), MAE at most {GOAL_PIT_MAE_LAPS:.0f} laps: "
            f"{met}. Median held-out race {median_pit:.2f} laps (baseline "
            f"{median_base:.2f}); pooled {np.mean(pooled[key].ours):.2f} against "
            f"{np.mean(pooled[key].baseline):.2f}."
        )
    for key in ("lap_all", "lap_green", "lap_steady"):
        cut = [
            1 - np.mean(r.errors[key].ours) / np.mean(r.errors[key].baseline)
            for r in held_out
            if r.errors[key].ours and np.mean(r.errors[key].baseline) > 0
        ]
        if not cut:
            continue
        median_cut = float(np.median(cut))
        met = "met" if median_cut >= GOAL_LAP_TIME_REDUCTION else "**not met**"
        _, split, _ = SPLITS[key]
        lines.append(
            f"- Next lap time, {split} laps, MAE at least "
            f"{GOAL_LAP_TIME_REDUCTION * 100:.0f} % below the baseline: {met}. "
            f"Median held-out race {median_cut * 100:.1f} % below "
            f"(races from {min(cut) * 100:.1f} to {max(cut) * 100:.1f} %)."
        )
    lines.append("")
    lines.append(
        "The goal is read on *all* laps: that is where yellows and red flags put the"
    )
    lines.append(
        "error. On steady green laps a median of five laps is close to the noise of"
    )
    lines.append("lap times, and no rule here cuts it by 40 %.")
    return lines


def render_stop_evidence(w: Callable[[str], None], results: list[RaceResult]) -> None:
    """The distribution the stop-kind thresholds were read from."""
    evidence = [e for r in results for e in r.stop_evidence]
    if not evidence:
        return
    excess = np.array([e.excess_s for e in evidence])
    w("### Where the stop-kind thresholds come from (all races)")
    w("")
    w(f"{len(evidence)} stops. Stops per 1 s band of excess over the transit time:")
    w("")
    counts = np.histogram(excess, bins=np.arange(0, 21))[0]
    w("| excess s | " + " | ".join(f"{i}–{i + 1}" for i in range(20)) + " |")
    w("|---|" + "---:|" * 20)
    w("| stops | " + " | ".join(str(c) for c in counts) + " |")
    w("")
    service = excess[
        (excess >= SPLASH_MAX_EXCESS_S) & (excess < 600) & ~_changes(evidence)
    ]
    q1, q3 = np.percentile(service, [25, 75])
    w(
        f"Same-driver stops of {SPLASH_MAX_EXCESS_S:.0f}–600 s excess: quartiles "
        f"{q1:.1f} / {np.median(service):.1f} / {q3:.1f} s; Tukey far-out fence "
        f"Q3 + 3 IQR = {q3 + 3 * (q3 - q1):.1f} s."
    )
    changes = excess[_changes(evidence) & (excess < 600)]
    w(
        f"Driver-change stops: min {changes.min():.1f} s, quartiles "
        f"{np.percentile(changes, 25):.1f} / {np.median(changes):.1f} / "
        f"{np.percentile(changes, 75):.1f} s: they overlap the same-driver stops, "
        "so duration cannot tell a driver change (the driver name does)."
    )
    w("")
    w(
        "Pace change across same-driver stops (median of the 3 racing laps after "
        "minus the 3 before): a tyre change should show as a gain that grows with "
        "the stop's length."
    )
    w("")
    w("| excess band s | stops | with pace both sides | median change s |")
    w("|---|---:|---:|---:|")
    for low, high in EXCESS_BANDS:
        band = [e for e in evidence if low <= e.excess_s < high and not e.driver_change]
        paced = [e.pace_change_s for e in band if e.pace_change_s is not None]
        median = f"{np.median(paced):+.2f}" if paced else "-"
        w(f"| {low}–{high} | {len(band)} | {len(paced)} | {median} |")
    w("")


def _changes(evidence: list[StopEvidence]) -> np.ndarray[Any, np.dtype[np.bool_]]:
    return np.array([e.driver_change for e in evidence])


def _error_row(name: str, key: str, e: Errors) -> str:
    quantity, split, unit = SPLITS[key]
    if not e.ours:
        return f"| {name} | {quantity} | {split} | 0 | - | - | - | - | - |"
    ours, base = np.asarray(e.ours), np.asarray(e.baseline)
    digits = _digits(unit)
    better = "ours" if ours.mean() < base.mean() else "baseline"
    if ours.mean() == base.mean():
        better = "tie"
    return (
        f"| {name} | {quantity} | {split} | {len(ours)} "
        f"| {ours.mean():.{digits}f} {unit} | {base.mean():.{digits}f} {unit} "
        f"| {np.median(ours):.{digits}f} {unit} | {np.median(base):.{digits}f} {unit} "
        f"| {better} |"
    )


def _verdict(title: str, errors: dict[str, Errors]) -> str:
    lines = [f"**Which wins** ({title}):", ""]
    for key, (quantity, split, _unit) in SPLITS.items():
        e = errors[key]
        if not e.ours:
            continue
        ours, base = float(np.mean(e.ours)), float(np.mean(e.baseline))
        change = (ours - base) / base * 100 if base else float("nan")
        if abs(change) < TIE_PERCENT:
            winner = f"a tie (within {TIE_PERCENT:.0f} %)"
        else:
            winner = "ours wins" if ours < base else "the baseline wins"
        lines.append(
            f"- {quantity}, {split}: {winner}: {ours:.3f} against {base:.3f} "
            f"({change:+.1f} %)."
        )
    return "\n".join(lines)


def _digits(unit: str) -> int:
    return 2 if unit == "laps" else 3


def _pct(value: float) -> str:
    return "-" if value != value else f"{value * 100:.1f} %"


# ---- fuel per lap on the real .ibt files ---------------------------------------------
@dataclass
class FuelResult:
    """One real recording: segmenter fuel per lap and predictions against iRacing's laps."""

    name: str
    laps: int = 0
    segment_errors: list[float] = field(default_factory=list)
    measured: list[float] = field(default_factory=list)
    predicted_errors: list[float] = field(default_factory=list)
    baseline_errors: list[float] = field(default_factory=list)
    note: str = ""


def real_fuel(folder: Path) -> list[FuelResult]:
    """Per real file: fuel used per lap by our segmenter and predicted before the lap.

    Truth is the fuel drop between the first ticks of consecutive values of iRacing's
    own ``Lap`` counter (no interpolation: the reading at the tick after the line).
    The prediction is the strategy's ``fuel_per_lap`` from the laps before; the
    baseline is the previous lap's use.
    """
    results = []
    for path in sorted(folder.glob("*.ibt")):
        result = FuelResult(path.stem)
        try:
            with IbtReader(path) as reader:
                chunks = list(reader.rows())
        except IbtError as exc:
            result.note = f"unreadable: {exc}"
            results.append(result)
            continue
        rows = np.concatenate(chunks) if chunks else None
        names = rows.dtype.names or () if rows is not None else ()
        if rows is None or "FuelLevel" not in names or "Lap" not in names:
            result.note = "no FuelLevel/Lap"
            results.append(result)
            continue
        lap_counter = rows["Lap"].astype(np.int64)
        starts = np.flatnonzero(np.diff(lap_counter) == 1) + 1
        measured = {
            int(lap_counter[a]): float(rows["FuelLevel"][a] - rows["FuelLevel"][b])
            for a, b in itertools.pairwise(starts)
        }
        history: list[LapFuel] = []
        for lap in LapSegmenter().feed(rows):
            truth = measured.get(lap.lap_number)
            if lap.fuel_used is None or truth is None or lap.lap_time is None:
                continue
            result.laps += 1
            result.measured.append(truth)
            result.segment_errors.append(abs(lap.fuel_used - truth))
            plan = plan_fuel(history, None, None, RaceLength(), lap.lap_number)
            if plan.fuel_per_lap is not None and history[-1].fuel_used is not None:
                result.predicted_errors.append(abs(plan.fuel_per_lap - truth))
                result.baseline_errors.append(abs(history[-1].fuel_used - truth))
            history.append(LapFuel(lap.lap_number, lap.lap_time, truth, lap.pit_lap))
        if not result.laps:
            result.note = "no complete lap between two line crossings"
        results.append(result)
    return results


def render_fuel(results: list[FuelResult]) -> str:
    out = ["", "## Fuel per lap on the real .ibt files", ""]
    w = out.append
    w("Truth: the fuel drop between the first ticks of consecutive values of")
    w("iRacing's own `Lap` counter. *Segmenter*: our lap's `fuel_used` (FuelLevel")
    w("at the first tick after our own line-crossing detection, which uses")
    w("`LapDistPct`, not `Lap`). *Prediction*: the strategy's `fuel_per_lap`")
    w("(median of recent green laps, `pitbox_appliance/strategy/fuel.py`) made")
    w("before the lap from the laps before it; baseline: the previous lap's use.")
    w("These recordings are short (0 to 2 complete laps each), so n is tiny: the")
    w("table shows the method works on real data, not how accurate it is.")
    w("")
    w(
        "| file | laps | mean fuel/lap l | segmenter MAE l | prediction n "
        "| prediction MAE l | baseline MAE l | note |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        w(
            f"| {r.name} | {r.laps} | {_mean(r.measured, 4)} "
            f"| {_mean(r.segment_errors, 5)} | {len(r.predicted_errors)} "
            f"| {_mean(r.predicted_errors, 5)} | {_mean(r.baseline_errors, 5)} "
            f"| {r.note} |"
        )
    w("")
    return "\n".join(out)


# ---- detectors on simulated races --------------------------------------------------
def render_detectors(scores: list[RaceScore], laps: int) -> str:
    out = ["", "## Detectors on simulated races (ground truth: the simulator)", ""]
    w = out.append
    w(
        f"{len(scores)} races of {laps} laps at Martinsville, options {SIM}: "
        "every label is simulated (docs/simulator.md), so these figures show the "
        "detectors against this simulator, not against real driving. Methods and "
        "thresholds: docs/detectors.md. GAIN of the fatigue analyzer was fitted on "
        "seed 5 (fatigue ×6), which is not scored here."
    )
    w("")
    w(
        "| race | laps | race min | incidents P | incidents R | type right "
        "| points right | fatigue P | fatigue R | fatigue MAE | damage P | damage R "
        "| pass-prediction P | pass R |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    total = {k: Counts() for k in ("incidents", "fatigue", "damage", "passes")}
    fatigue_errors: list[float] = []
    loss_errors: list[float] = []
    type_right = points_right = 0
    by_type = {k: Counts() for k in ("off_track", "spin", "contact")}
    for s in scores:
        for key, counts in total.items():
            counts.add(getattr(s, key))
        fatigue_errors += s.fatigue_errors
        loss_errors += s.damage_loss_errors
        type_right += s.incident_type_right
        points_right += s.incident_points_right
        for kind, counts in s.by_type.items():
            by_type[kind].add(counts)
        w(_score_row(s.label, s.laps, s.race_s, s, s.fatigue_errors))
    matched = total["incidents"].reference_hits
    w(
        "| **all** | "
        + f"{sum(s.laps for s in scores)} | {sum(s.race_s for s in scores) / 60:.0f} | "
        + f"{_pct(total['incidents'].precision)} | {_pct(total['incidents'].recall)} | "
        + f"{type_right}/{matched} | {points_right}/{matched} | "
        + f"{_pct(total['fatigue'].precision)} | {_pct(total['fatigue'].recall)} | "
        + f"{_mean(fatigue_errors, 3)} | "
        + f"{_pct(total['damage'].precision)} | {_pct(total['damage'].recall)} | "
        + f"{_pct(total['passes'].precision)} | {_pct(total['passes'].recall)} |"
    )
    w("")
    motion = Counts()
    motion_type_right = 0
    motion_by_type = {k: Counts() for k in by_type}
    for s in scores:
        motion.add(s.motion_only)
        motion_type_right += s.motion_only_type_right
        for kind, counts in s.motion_by_type.items():
            motion_by_type[kind].add(counts)
    w("Incident sequences (iRacing-style escalation, scored by their worst stage),")
    w("with all channels and *motion only*: the same races with `PlayerTrackSurface`")
    w("and the incident counters removed, so only yaw and accelerations are left")
    w("(older recordings and other sims have no counter):")
    w("")
    w("| worst stage | sequences | found | recall | motion only: found | recall |")
    w("|---|---:|---:|---:|---:|---:|")
    for kind, counts in by_type.items():
        blind = motion_by_type[kind]
        w(
            f"| {kind} | {counts.reference} | {counts.reference_hits} "
            f"| {_pct(counts.recall)} | {blind.reference_hits} "
            f"| {_pct(blind.recall)} |"
        )
    w("")
    w(
        f"Motion only, all stages: precision {_pct(motion.precision)}, recall "
        f"{_pct(motion.recall)}, worst stage named right "
        f"{motion_type_right}/{motion.reference_hits}."
    )
    w("")
    w("Definitions: an incident is found when `incident_detected` starts within 3 s")
    w("of a truth sequence's start; *type right* = the worst stage named correctly;")
    w("*points right* = `points` equals what the (simulated) counter added.")
    w("Fatigue is scored per green lap, with the last published level before the")
    w("lap's end: *fatigued* = level ≥ 0.5 (P/R of that call), MAE of the level")
    w("against the simulator's. Damage: an immediate `damage_alert` within 2 s of a")
    w("truth damage event. Pass prediction: `drafting_opportunity` ahead with")
    w("`laps_to_pass` ≤ 2 is right when we pass that car within (laps_to_pass + 0.5)")
    w("laps + 5 s; recall = passes we made (green) that such a call preceded.")
    n_loss = len(loss_errors)
    w("")
    w(
        f"Lap-time loss after damage: {n_loss} measured; MAE against the simulator's "
        f"damage loss {_mean(loss_errors, 3)} s (confounded by fatigue, tyre wear "
        "and fuel burn between the pre- and post-damage laps)."
    )
    frames = sum(s.frames for s in scores)
    seconds = sum(s.detector_s for s in scores)
    batch = np.concatenate([np.asarray(s.batch_s) for s in scores]) * 1e3
    w("")
    w(
        f"Detector cost in these runs (600-frame batches): {seconds / frames * 1e6:.1f} "
        f"µs per frame, batch p50 {np.percentile(batch, 50):.2f} ms, p99 "
        f"{np.percentile(batch, 99):.2f} ms (a batch is 10 s of race); live-cadence "
        "figures are in bench/RESULTS.md (bench/detector_cost.py)."
    )
    w("")
    return "\n".join(out)


def _score_row(
    label: str, laps: int, race_s: float, s: RaceScore, fatigue_errors: list[float]
) -> str:
    return (
        f"| {label} | {laps} | {race_s / 60:.0f} | {_pct(s.incidents.precision)} "
        f"| {_pct(s.incidents.recall)} "
        f"| {s.incident_type_right}/{s.incidents.reference_hits} "
        f"| {s.incident_points_right}/{s.incidents.reference_hits} "
        f"| {_pct(s.fatigue.precision)} | {_pct(s.fatigue.recall)} "
        f"| {_mean(fatigue_errors, 3)} | {_pct(s.damage.precision)} "
        f"| {_pct(s.damage.recall)} | {_pct(s.passes.precision)} "
        f"| {_pct(s.passes.recall)} |"
    )


def _mean(values: list[float], digits: int) -> str:
    return f"{np.mean(values):.{digits}f}" if values else "-"


if __name__ == "__main__":
    sys.exit(main())
