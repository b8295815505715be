"""Scores the detectors against the race simulator's ground truth (precision, recall, errors)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driver_pc.adapters.simulator import RaceSimulatorAdapter, TruthEvent, TruthKind
from pitbox_appliance.detectors.base import Emission
from training.offline_detectors import OfflineRun, run_detectors

MATCH_S = 3.0  # a detection within this of a truth sequence's start is that sequence
DAMAGE_MATCH_S = 2.0
FATIGUED = 0.5  # "fatigued" = level at or above this, for precision/recall
PASS_LOOKAHEAD_LAPS = 2.0  # a pass predicted within this many laps is scored
INCIDENT_KINDS = ("off_track", "spin", "contact")
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
    detector_s: float = 0.0
    frames: int = 0
    batch_s: list[float] = field(default_factory=list)


def simulate_and_score(label: str, **options: Any) -> RaceScore:
    """Run one simulated race flat out, feed it to the detectors, score every detector."""
    sim = RaceSimulatorAdapter(speed=0, **options)
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


def incident_sequences(truth: Sequence[TruthEvent]) -> list[dict[str, Any]]:
    """Truth incident stages grouped by sequence: start, worst stage, points counted."""
    seqs: dict[int, dict[str, Any]] = {}
    for e in truth:
        s = seqs.setdefault(
            int(e.data["sequence"]),
            {"start": e.session_time, "type": str(e.data["type"]), "points": 0},
        )
        s["points"] += int(e.data["counted"])
        if INCIDENT_KINDS.index(str(e.data["type"])) > INCIDENT_KINDS.index(s["type"]):
            s["type"] = str(e.data["type"])
    return list(seqs.values())


def _score_incidents(
    score: RaceScore, run: OfflineRun, truth: Sequence[TruthEvent]
) -> None:
    seqs = incident_sequences(truth)
    found = run.of("incident_detected")
    counts = score.incidents
    counts.found, counts.reference = len(found), len(seqs)
    counts.hits = sum(
        any(abs(e.session_time - s["start"]) < MATCH_S for s in seqs) for e in found
    )
    for kind in INCIDENT_KINDS:
        score.by_type[kind] = Counts()
    for s in seqs:
        by_type = score.by_type[s["type"]]
        by_type.reference += 1
        match = [e for e in found if abs(e.session_time - s["start"]) < MATCH_S]
        if not match:
            continue
        counts.reference_hits += 1
        by_type.reference_hits += 1
        score.incident_type_right += match[0].payload["incident"] == s["type"]
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
