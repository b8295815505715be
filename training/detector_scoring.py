"""Scores the detectors: against the simulator's independent truth and against iRacing's own counter in real files."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from driver_pc.adapters.simulator import RaceSimulatorAdapter, TruthEvent, TruthKind
from pitbox_appliance.detectors.base import Emission
from training.offline_detectors import OfflineRun, run_detectors

MATCH_S = 3.0  # a detection within this of a truth sequence's start is that sequence
DAMAGE_MATCH_S = 2.0
FATIGUED = 0.5  # "fatigued" = level at or above this, for precision/recall
PASS_LOOKAHEAD_LAPS = 2.0  # a pass predicted within this many laps is scored
INCIDENT_KINDS = ("off_track", "spin", "contact")
# Every stage type the simulator's truth can name, least severe first; "save" and
# "light_contact" (the independent model's) add no points.
STAGE_ORDER = ("save", "light_contact", "off_track", "spin", "contact")
# The races scored in docs/accuracy.md; anything tuned on the simulator must use other
# seeds (TUNING_SEEDS), never these.
SCORING_SEEDS = (21, 22, 23, 24, 25)
TUNING_SEEDS = (5, 6, 7)
COUNTER_CHANNELS = ("PlayerCarTeamIncidentCount", "PlayerCarMyIncidentCount")
# Without these the incident detector has only the car's motion (yaw, accelerations):
# what older recordings and other sims give.
COUNTER_AND_SURFACE = (
    "PlayerTrackSurface",
    "PlayerCarTeamIncidentCount",
    "PlayerCarMyIncidentCount",
    "PlayerCarDriverIncidentCount",
)


@dataclass
class Counts:
    """Detections against references: true positives, found, reference."""

    hits: int = 0
    found: int = 0
    reference: int = 0
    reference_hits: int = 0

    def add(self, other: Counts) -> None:
        self.hits += other.hits
        self.found += other.found
        self.reference += other.reference
        self.reference_hits += other.reference_hits

    @property
    def precision(self) -> float:
        return self.hits / self.found if self.found else float("nan")

    @property
    def recall(self) -> float:
        return self.reference_hits / self.reference if self.reference else float("nan")

    @property
    def precision_ci(self) -> tuple[float, float]:
        """Wilson 95 % interval of the precision (nan, nan without detections)."""
        return wilson(self.hits, self.found)

    @property
    def recall_ci(self) -> tuple[float, float]:
        """Wilson 95 % interval of the recall (nan, nan without reference events)."""
        return wilson(self.reference_hits, self.reference)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95 % for z = 1.96)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class RaceScore:
    """Every detector's score on one simulated race."""

    label: str
    laps: int
    race_s: float
    incidents: Counts = field(default_factory=Counts)
    incident_type_right: int = 0
    incident_points_right: int = 0
    by_type: dict[str, Counts] = field(default_factory=dict)
    fatigue: Counts = field(default_factory=Counts)
    fatigue_errors: list[float] = field(default_factory=list)
    damage: Counts = field(default_factory=Counts)
    damage_loss_errors: list[float] = field(default_factory=list)
    passes: Counts = field(default_factory=Counts)
    motion_only: Counts = field(default_factory=Counts)
    motion_only_type_right: int = 0
    motion_by_type: dict[str, Counts] = field(default_factory=dict)
    uncounted: int = 0  # 0x sequences (saves, light contacts) in the truth
    uncounted_found: int = 0  # detections that matched one of them (not a counted one)
    detector_s: float = 0.0
    frames: int = 0
    batch_s: list[float] = field(default_factory=list)


def simulate_and_score(
    label: str, truth_model: str = "independent", **options: Any
) -> RaceScore:
    """Run one simulated race flat out, feed it to the detectors, score every detector.

    ``truth_model="independent"`` (the default) draws the race's fatigue and incident
    causes from constants the detectors do not share (docs/simulator.md).
    """
    sim = RaceSimulatorAdapter(speed=0, truth_model=truth_model, **options)
    batches = list(sim.ticks())
    changes = [
        (e.session_time, str(e.data["driver_in"]))
        for e in sim.truth_of(TruthKind.DRIVER_CHANGE, car_idx=0)
    ]
    first = str(sim.truth_of(TruthKind.LAP)[0].data["driver"])

    def driver_at(t: float) -> str:
        driver = first
        for at, name in changes:
            if t >= at:
                driver = name
        return driver

    run = run_detectors(batches, driver_at=driver_at)
    laps = sim.truth_of(TruthKind.LAP)
    score = RaceScore(label, len(laps), float(batches[-1]["SessionTime"][-1]))
    score.detector_s = float(np.sum(run.batch_seconds))
    score.frames = int(np.sum(run.batch_frames))
    score.batch_s = run.batch_seconds
    _score_incidents(score, run, sim.truth_of(TruthKind.INCIDENT, car_idx=0))
    _score_fatigue(score, run, laps)
    _score_damage(score, run, sim.truth_of(TruthKind.DAMAGE, car_idx=0), laps)
    _score_passes(score, run, sim.truth_of(TruthKind.PASS, car_idx=0), laps)
    keep = [n for n in batches[0].dtype.names or () if n not in COUNTER_AND_SURFACE]
    motion = run_detectors([b[keep] for b in batches], names=["incident"])
    blind = RaceScore(label, score.laps, score.race_s)
    _score_incidents(blind, motion, sim.truth_of(TruthKind.INCIDENT, car_idx=0))
    score.motion_only = blind.incidents
    score.motion_only_type_right = blind.incident_type_right
    score.motion_by_type = blind.by_type
    return score


def _worse(a: str, b: str) -> bool:
    """Stage ``a`` is more severe than ``b``."""
    return STAGE_ORDER.index(a) > STAGE_ORDER.index(b)


def incident_sequences(truth: Sequence[TruthEvent]) -> list[dict[str, Any]]:
    """Truth incident stages grouped by sequence.

    Each: ``start``, ``type`` (worst stage), ``points`` (what the counter added),
    ``counted_type`` (worst stage that added points; None for a 0x sequence).
    """
    seqs: dict[int, dict[str, Any]] = {}
    for e in truth:
        kind = str(e.data["type"])
        s = seqs.setdefault(
            int(e.data["sequence"]),
            {"start": e.session_time, "type": kind, "points": 0, "counted_type": None},
        )
        s["points"] += int(e.data["counted"])
        if _worse(kind, s["type"]):
            s["type"] = kind
        if int(e.data["points"]) > 0 and (
            s["counted_type"] is None or _worse(kind, s["counted_type"])
        ):
            s["counted_type"] = kind
    return list(seqs.values())


def _score_incidents(
    score: RaceScore, run: OfflineRun, truth: Sequence[TruthEvent]
) -> None:
    """Detections against the sequences iRacing's counter counts (points > 0).

    A detection that matches only a 0x sequence (a save, a light contact) is a false
    positive against the counter; it is also counted in ``uncounted_found``.
    """
    every = incident_sequences(truth)
    seqs = [s for s in every if s["points"] > 0]
    zero = [s for s in every if s["points"] == 0]
    found = run.of("incident_detected")
    counts = score.incidents
    counts.found, counts.reference = len(found), len(seqs)

    def near(e: Emission, pool: list[dict[str, Any]]) -> bool:
        return any(abs(e.session_time - s["start"]) < MATCH_S for s in pool)

    counts.hits = sum(near(e, seqs) for e in found)
    score.uncounted = len(zero)
    score.uncounted_found = sum(near(e, zero) and not near(e, seqs) for e in found)
    for kind in INCIDENT_KINDS:
        score.by_type[kind] = Counts()
    for s in seqs:
        kind = str(s["counted_type"])
        by_type = score.by_type.setdefault(kind, Counts())
        by_type.reference += 1
        match = [e for e in found if abs(e.session_time - s["start"]) < MATCH_S]
        if not match:
            continue
        counts.reference_hits += 1
        by_type.reference_hits += 1
        score.incident_type_right += match[0].payload["incident"] == kind
        score.incident_points_right += match[0].payload["points"] == s["points"]


def _score_fatigue(
    score: RaceScore, run: OfflineRun, laps: Sequence[TruthEvent]
) -> None:
    updates = run.of("driver_fatigue_update")
    counts = score.fatigue
    for lap in laps:
        if lap.data["pit"]:
            continue
        before = [u for u in updates if u.session_time <= lap.session_time + 1e-6]
        if not before:
            continue
        ours = float(before[-1].payload["fatigue"])
        truth = float(lap.data["fatigue"])
        score.fatigue_errors.append(abs(ours - truth))
        counts.found += ours >= FATIGUED
        counts.reference += truth >= FATIGUED
        counts.hits += ours >= FATIGUED and truth >= FATIGUED
        counts.reference_hits += ours >= FATIGUED and truth >= FATIGUED


def _score_damage(
    score: RaceScore,
    run: OfflineRun,
    truth: Sequence[TruthEvent],
    laps: Sequence[TruthEvent],
) -> None:
    alerts = [a for a in run.of("damage_alert") if a.payload["lap_time_loss_s"] is None]
    counts = score.damage
    counts.found, counts.reference = len(alerts), len(truth)
    counts.hits = sum(
        any(abs(a.session_time - d.session_time) < DAMAGE_MATCH_S for d in truth)
        for a in alerts
    )
    counts.reference_hits = sum(
        any(abs(a.session_time - d.session_time) < DAMAGE_MATCH_S for a in alerts)
        for d in truth
    )
    lap_times = [float(x.data["lap_time"]) for x in laps if not x.data["pit"]]
    reference = float(np.median(lap_times)) if lap_times else 0.0
    for alert in run.of("damage_alert"):
        loss = alert.payload["lap_time_loss_s"]
        if loss is None:
            continue
        cause = [d for d in truth if d.session_time <= alert.session_time]
        if cause:
            truth_loss = float(cause[-1].data["lap_time_loss"]) * reference
            score.damage_loss_errors.append(abs(loss - truth_loss))


def _score_passes(
    score: RaceScore,
    run: OfflineRun,
    truth: Sequence[TruthEvent],
    laps: Sequence[TruthEvent],
) -> None:
    gained = [p for p in truth if p.data["gained"] and not p.data["under_yellow"]]
    lap_times = [float(x.data["lap_time"]) for x in laps if not x.data["pit"]]
    lap_ref = float(np.median(lap_times)) if lap_times else 26.4
    predictions = [
        e
        for e in run.of("drafting_opportunity")
        if e.payload["direction"] == "ahead"
        and e.payload["laps_to_pass"] is not None
        and e.payload["laps_to_pass"] <= PASS_LOOKAHEAD_LAPS
    ]
    counts = score.passes
    counts.found, counts.reference = len(predictions), len(gained)

    def came_true(e: Emission, p: TruthEvent) -> bool:
        horizon = (float(e.payload["laps_to_pass"]) + 0.5) * lap_ref + 5.0
        return int(p.data["other_car_idx"]) == int(e.payload["other_idx"]) and (
            e.session_time <= p.session_time <= e.session_time + horizon
        )

    counts.hits = sum(any(came_true(e, p) for p in gained) for e in predictions)
    counts.reference_hits = sum(
        any(came_true(e, p) for e in predictions) for p in gained
    )


# ---- real data: iRacing's own incident counter -----------------------------------------
@dataclass
class RealFileScore:
    """The incident detector on one real .ibt against iRacing's counter in the same file."""

    name: str
    seconds: float = 0.0
    counter: str | None = None  # the counter channel used, None when the file has none
    counter_range: tuple[int, int] | None = None
    events: int = 0  # counter increments (those within MATCH_S of each other = one)
    points: int = 0
    full: Counts = field(default_factory=Counts)  # every channel the detector reads
    motion: Counts = field(default_factory=Counts)  # counter and surface removed
    detections: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""


def counter_events(
    frames: np.ndarray[Any, Any], name: str
) -> tuple[list[float], int, tuple[int, int]]:
    """Times of the counter's increments (grouped within MATCH_S), total points, range."""
    count = frames[name].astype(np.int64)
    t = frames["SessionTime"].astype(np.float64)
    rise = np.flatnonzero(np.diff(count) > 0) + 1
    times: list[float] = []
    for i in rise:
        if not times or t[i] - times[-1] > MATCH_S:
            times.append(float(t[i]))
    points = int(np.clip(np.diff(count), 0, None).sum())
    return times, points, (int(count.min()), int(count.max()))


def score_real_file(path: Path) -> RealFileScore:
    """Run the incident detector on a real recording; score it where the counter exists."""
    from driver_pc.adapters.ibt_file import IbtError, IbtReader

    score = RealFileScore(path.stem)
    try:
        with IbtReader(path) as reader:
            batches = list(reader.rows())
    except (IbtError, OSError, ValueError) as exc:
        score.note = f"unreadable: {exc}"
        return score
    batches = [b for b in batches if len(b)]
    if not batches:
        score.note = "no rows"
        return score
    frames = np.concatenate(batches)
    score.seconds = float(frames["SessionTime"][-1] - frames["SessionTime"][0])
    names = frames.dtype.names or ()
    counter = next((c for c in COUNTER_CHANNELS if c in names), None)
    run = run_detectors(batches, names=["incident"])
    keep = [n for n in names if n not in COUNTER_AND_SURFACE]
    motion = run_detectors([b[keep] for b in batches], names=["incident"])
    found = run.of("incident_detected")
    score.detections = [
        {
            "t": round(e.session_time, 2),
            "incident": e.payload["incident"],
            "points": e.payload["points"],
            "confidence": e.payload["confidence"],
        }
        for e in found
    ]
    score.full.found = len(found)
    score.motion.found = len(motion.of("incident_detected"))
    if counter is None:
        score.note = "no incident counter in this file: detections cannot be scored"
        return score
    times, points, span = counter_events(frames, counter)
    score.counter, score.points, score.counter_range = counter, points, span
    score.events = len(times)
    for counts, emitted in (
        (score.full, found),
        (score.motion, motion.of("incident_detected")),
    ):
        counts.reference = len(times)
        counts.hits = sum(
            any(abs(e.session_time - t) < MATCH_S for t in times) for e in emitted
        )
        counts.reference_hits = sum(
            any(abs(e.session_time - t) < MATCH_S for e in emitted) for t in times
        )
    if not times:
        score.note = f"the counter stays at {span[0]}: no real incident to find"
    return score


@dataclass
class SessionUpdatesSurvey:
    """What a folder of session-info updates holds about incidents, per session."""

    updates: int = 0
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)


def _load_yaml(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="latin-1")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    data = yaml.load(text, Loader=loader)
    return data if isinstance(data, dict) else {}


def survey_session_updates(folder: Path) -> SessionUpdatesSurvey:
    """Per session: updates carrying results, cars, laps, incident points and their increments.

    An increment is a rise of a car's ``ResultsPositions[].Incidents`` from one update to
    the next: the only timed incident truth session info can give.
    """
    files = sorted(
        folder.glob("*.yaml"),
        key=lambda p: int(p.name.split("_")[2]) if p.name.count("_") > 2 else 0,
    )
    survey = SessionUpdatesSurvey(updates=len(files))
    last: dict[tuple[int, int], int] = {}
    for path in files:
        info = _load_yaml(path)
        for ses in (info.get("SessionInfo") or {}).get("Sessions") or []:
            num = int(ses.get("SessionNum", -1))
            key = f"{num} {ses.get('SessionType', '?')}"
            entry = survey.sessions.setdefault(
                key,
                {
                    "updates_with_results": 0,
                    "cars": 0,
                    "laps": 0,
                    "points": 0,
                    "cars_with_points": 0,
                    "increments": 0,
                    "points_nonzero_updates": 0,
                },
            )
            rows = ses.get("ResultsPositions") or []
            if not rows:
                continue
            entry["updates_with_results"] += 1
            entry["cars"] = max(entry["cars"], len(rows))
            entry["laps"] = max(
                entry["laps"], max(int(r.get("LapsComplete", 0)) for r in rows)
            )
            total = sum(int(r.get("Incidents", 0)) for r in rows)
            entry["points"] = max(entry["points"], total)
            entry["cars_with_points"] = max(
                entry["cars_with_points"],
                sum(int(r.get("Incidents", 0)) > 0 for r in rows),
            )
            entry["points_nonzero_updates"] += total > 0
            for r in rows:
                car = (num, int(r.get("CarIdx", -1)))
                now = int(r.get("Incidents", 0))
                if car in last and now > last[car]:
                    entry["increments"] += 1
                last[car] = now
    return survey


def pooled(scores: Iterable[Counts]) -> Counts:
    """The sum of several counts."""
    total = Counts()
    for c in scores:
        total.add(c)
    return total
