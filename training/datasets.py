"""Training and held-out data of every model: IMSA timing, real .ibt files, simulated races.

Splits are by race or session, never by rows of one race. Everything is numpy; the
simulated races are generated from fixed seeds, so a dataset is a pure function of
its sources. Every simulated label is simulated (docs/simulator.md).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pitbox_appliance.models.features import (
    INCIDENT_CLASSES,
    LapRecord,
    clean_laps,
    fatigue_features,
    fuel_features,
    incident_features,
)

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
# IMSA races by season: models train on the earlier seasons and are scored on the
# later ones, race by race (never laps of one race on both sides).
IMSA_TRAIN_SEASONS = ("2021", "2022")
IMSA_HELD_OUT_SEASONS = ("2023", "2024")
IBT_FUEL_FILES = (
    "skmodified_martinsville_2015-05-30_20-32-44.ibt",
    "skmodified_langley_2015-05-28_14-45-12.ibt",
    "skmodified_langley_2015-05-28_14-45-28.ibt",
    "skmodified_langley_2015-05-28_14-47-39.ibt",
    "skmodified_langley_2015-05-28_14-49-50.ibt",
)


@dataclass(frozen=True, slots=True)
class SimRaceSpec:
    """One simulated race used for training or held-out checks (all labels simulated)."""

    seed: int
    laps: int = 150
    opponents: int = 6
    fatigue: float = 3.0
    incidents: float = 4.0
    stints_per_driver: int = 2


SIM_TRAIN = tuple(SimRaceSpec(seed) for seed in (101, 102, 103, 104))
SIM_HELD_OUT = tuple(SimRaceSpec(seed) for seed in (201, 202))


@dataclass
class Dataset:
    """Rows of one model on one split: features, target, reference and baseline values.

    ``reference`` is what the model's output is added to (a median of recent laps);
    ``baselines`` holds each baseline's prediction of the target in absolute units,
    ``truth`` the absolute target; ``groups`` names the race/session of each row.
    """

    x: np.ndarray
    y: np.ndarray
    reference: np.ndarray
    truth: np.ndarray
    baselines: dict[str, np.ndarray] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def real_data_dir() -> Path:
    """``$PITBOX_REAL_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("PITBOX_REAL_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def imsa_races(seasons: tuple[str, ...], directory: Path | None = None) -> list[Path]:
    """The IMSA lap charts (.csv and .csv.gz) of these seasons, by name."""
    from pitbox_appliance.strategy.timing import lap_chart_files

    folder = (directory or real_data_dir()) / "imsa"
    if not folder.is_dir():
        return []
    return [path for path in lap_chart_files(folder) if path.name.startswith(seasons)]


def _stack(
    rows: list[tuple[np.ndarray, float, float, float, dict[str, float], str]],
    n_features: int,
) -> Dataset:
    if not rows:
        return Dataset(
            np.zeros((0, n_features), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0),
            np.zeros(0),
        )
    names = rows[0][4].keys()
    return Dataset(
        x=np.stack([r[0] for r in rows]).astype(np.float32),
        y=np.array([r[1] for r in rows], dtype=np.float32),
        reference=np.array([r[2] for r in rows]),
        truth=np.array([r[3] for r in rows]),
        baselines={n: np.array([r[4][n] for r in rows]) for n in names},
        groups=[r[5] for r in rows],
    )


# -- next lap time: IMSA ------------------------------------------------------------


def lap_time_dataset(files: Iterable[Path]) -> Dataset:
    """Rows at the end of every racing lap whose next lap is a racing lap too.

    Features come from the timing engine's own state (strategy/predict.py), so
    training sees exactly what ``pitbox timing`` computes live. Baselines: the
    engine's pace rule (``engine``), the last lap (``last_lap``) and the median
    of the car's last five green laps (``median_last_five``, the issue's naive
    baseline, which the model must beat).
    """
    from pitbox_appliance.models.features import LAP_TIME_FEATURES
    from pitbox_appliance.strategy.predict import (
        PredictionConfig,
        RacePredictor,
        is_racing_lap,
        race_order,
    )
    from pitbox_appliance.strategy.timing import read_timing_csv

    rows = []
    for path in files:
        laps = read_timing_csv(path)
        race = RacePredictor(PredictionConfig(), lap_time_model=None)
        race.feature_log = []
        ordered = list(race_order(laps))
        naive: dict[tuple[str, int], float | None] = {}
        for lap in ordered:
            naive[(lap.car, lap.lap)] = race.observe(lap).baseline_next_lap_time_s
        following = {}
        by_car: dict[str, list[Any]] = {}
        for lap in ordered:
            by_car.setdefault(lap.car, []).append(lap)
        for car_laps in by_car.values():
            for previous, nxt in itertools.pairwise(car_laps):
                following[(previous.car, previous.lap)] = (previous, nxt)
        for car, number, x, reference, pace in race.feature_log:
            pair = following.get((car, number))
            if pair is None:
                continue
            previous, nxt = pair
            if not is_racing_lap(nxt, previous) or nxt.lap_time_s is None:
                continue
            median_five = naive.get((car, number))
            if previous.lap_time_s is None or median_five is None:
                continue
            rows.append(
                (
                    x,
                    nxt.lap_time_s - reference,
                    reference,
                    nxt.lap_time_s,
                    {
                        "engine": pace,
                        "last_lap": previous.lap_time_s,
                        "median_last_five": median_five,
                    },
                    path.name,
                )
            )
    return _stack(rows, len(LAP_TIME_FEATURES))


# -- fuel per lap: simulated races and real .ibt files ------------------------------


def ibt_laps(path: Path) -> list[LapRecord]:
    """Completed laps of an .ibt file, segmented as the appliance segments them."""
    from driver_pc.adapters.ibt_file import IbtReader
    from pitbox_appliance.analysis.segmentation import LapSegmenter

    segmenter = LapSegmenter()
    laps: list[LapRecord] = []
    with IbtReader(path) as reader:
        for rows in reader.rows():
            for lap in segmenter.feed(rows):
                laps.append(
                    LapRecord(
                        lap.lap_number, lap.lap_time, lap.fuel_used, lap.pit_lap, ""
                    )
                )
    return laps


def fuel_rows(
    laps: list[LapRecord], group: str, skip: set[int] | None = None
) -> list[tuple[np.ndarray, float, float, float, dict[str, float], str]]:
    """Rows predicting each clean lap's fuel from the laps before it.

    ``skip``: lap numbers not to predict (neutralised laps, whose fuel use the
    strategy engine excludes anyway). Baselines: rolling median, last lap.
    """
    rows = []
    for i in range(1, len(laps)):
        target = laps[i]
        if target.pit or target.fuel_l is None or target.fuel_l <= 0:
            continue
        if target.time_s is None or (skip and target.lap in skip):
            continue
        found = fuel_features(laps[:i])
        if found is None:
            continue
        x, reference = found
        last = clean_laps(laps[:i])[-1].fuel_l or reference
        rows.append(
            (
                x,
                target.fuel_l / reference - 1,
                reference,
                target.fuel_l,
                {"rolling_median": reference, "last_lap": last},
                group,
            )
        )
    return rows


def ibt_fuel_dataset(directory: Path) -> Dataset:
    """Fuel rows of the real .ibt recordings (each file its own session)."""
    from pitbox_appliance.models.features import FUEL_FEATURES

    rows = []
    for name in IBT_FUEL_FILES:
        path = directory / "iracing" / "ibt" / name
        if path.is_file():
            rows += fuel_rows(ibt_laps(path), name)
    return _stack(rows, len(FUEL_FEATURES))


# -- simulated races ------------------------------------------------------------------


@dataclass
class SimRace:
    """What one simulated race gives the models: team-car laps and incident windows."""

    name: str
    laps: list[LapRecord]
    fcy_laps: set[int]
    fatigue: list[float]  # truth fatigue at the end of each of ``laps``
    incidents: list[tuple[np.ndarray, str]]  # (features, worst stage type)


def simulate(spec: SimRaceSpec) -> SimRace:
    """Run one simulated race flat out and extract its laps, labels and incidents."""
    from driver_pc.adapters.simulator import RaceSimulatorAdapter, TruthKind

    sim = RaceSimulatorAdapter(
        laps=spec.laps,
        speed=0,
        seed=spec.seed,
        opponents=spec.opponents,
        fatigue=spec.fatigue,
        incidents=spec.incidents,
        stints_per_driver=spec.stints_per_driver,
    )
    channels = (
        "SessionTime",
        "Speed",
        "LongAccel",
        "LatAccel",
        "Yaw",
        "SteeringWheelAngle",
    )
    chunks: dict[str, list[np.ndarray]] = {c: [] for c in channels}
    for rows in sim.ticks():
        for c in channels:
            chunks[c].append(np.asarray(rows[c], dtype=np.float64))
    data = {c: np.concatenate(v) for c, v in chunks.items()}
    player = 0
    lap_truth = sim.truth_of(TruthKind.LAP, car_idx=player)
    laps = [
        LapRecord(
            e.lap,
            float(e.data["lap_time"]),
            float(e.data["fuel_used_l"]),
            bool(e.data["pit"]),
            str(e.data["driver"]),
        )
        for e in lap_truth
    ]
    fcy = {e.lap for e in lap_truth if e.data["fcy"]}
    fatigue = [float(e.data["fatigue"]) for e in lap_truth]
    sequences: dict[int, list[Any]] = {}
    for e in sim.truth_of(TruthKind.INCIDENT, car_idx=player):
        sequences.setdefault(int(e.data["sequence"]), []).append(e)
    incidents = []
    for stages in sequences.values():
        worst = max(stages, key=lambda e: int(e.data["points"]))
        start = stages[0].session_time - 1.0
        end = stages[-1].session_time + 4.0
        window = (data["SessionTime"] >= start) & (data["SessionTime"] <= end)
        if window.sum() < 2:
            continue
        x = incident_features(*(data[c][window] for c in channels))
        incidents.append((x, str(worst.data["type"])))
    return SimRace(f"sim-seed{spec.seed}", laps, fcy, fatigue, incidents)


def sim_fuel_dataset(races: Iterable[SimRace]) -> Dataset:
    """Fuel rows of simulated races (neutralised laps not predicted)."""
    from pitbox_appliance.models.features import FUEL_FEATURES

    rows = []
    for race in races:
        rows += fuel_rows(race.laps, race.name, skip=race.fcy_laps)
    return _stack(rows, len(FUEL_FEATURES))


def fatigue_dataset(races: Iterable[SimRace]) -> Dataset:
    """Rows at the end of every lap with ≥ 3 timed laps in the stint; target = level."""
    from pitbox_appliance.models.features import FATIGUE_FEATURES

    rows = []
    for race in races:
        for i in range(len(race.laps)):
            found = fatigue_features(race.laps[: i + 1])
            if found is None:
                continue
            x, _ = found
            level = race.fatigue[i]
            rows.append(
                (x, level, 0.0, level, {"stint_time_linear": float(x[0])}, race.name)
            )
    return _stack(rows, len(FATIGUE_FEATURES))


def incident_dataset(races: Iterable[SimRace]) -> Dataset:
    """One row per incident sequence; target = class index of its worst stage."""
    from pitbox_appliance.models.features import INCIDENT_FEATURES

    rows = []
    for race in races:
        for x, kind in race.incidents:
            label = float(INCIDENT_CLASSES.index(kind))
            rows.append((x, label, 0.0, label, {"threshold_rules": 0.0}, race.name))
    return _stack(rows, len(INCIDENT_FEATURES))
