"""DriverPerformanceAnalyzer (strengths and weaknesses per section and skill) and LapComparisonTool (optimal vs actual laps)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloud_sync.analytics.sections import (
    LapSections,
    lap_sections,
    robust_spread,
    section_kinds,
    section_names,
)
from cloud_sync.compacted import CompactedSession


@dataclass
class OptimalLap:
    """The sum of the best time in every section, and every clean lap against it."""

    sections: list[str]
    kinds: list[str]
    best: list[float]
    best_by: list[str]  # driver who set each best section
    optimal: float
    best_lap: float
    laps: list[dict[str, Any]]  # lap, driver, lap_time, loss per section, total loss


class LapComparisonTool:
    """Optimal lap from the best sections of the session against each actual lap."""

    def __init__(self, sessions: list[CompactedSession]) -> None:
        self.cut = [s for session in sessions for s in lap_sections(session)]

    def optimal(self) -> OptimalLap | None:
        if not self.cut:
            return None
        times = np.vstack([s.times for s in self.cut])
        best_idx = times.argmin(axis=0)
        best = times.min(axis=0)
        laps = [
            {
                "lap": s.lap.lap_number,
                "driver": s.lap.driver,
                "lap_time": s.lap.lap_time,
                "loss": [float(x) for x in s.times - best],
                "total_loss": float((s.times - best).sum()),
            }
            for s in self.cut
        ]
        return OptimalLap(
            sections=section_names(len(best)),
            kinds=section_kinds(self.cut),
            best=[float(x) for x in best],
            best_by=[self.cut[int(i)].lap.driver for i in best_idx],
            optimal=float(best.sum()),
            best_lap=float(min(s.times.sum() for s in self.cut)),
            laps=laps,
        )


@dataclass
class DriverProfile:
    """One driver's figures in one or more sessions; ``skills`` are seconds lost or spreads."""

    driver: str
    laps: int
    clean_laps: int
    best_lap: float | None
    mean_lap: float | None
    consistency_s: float | None  # robust spread of clean lap times
    section_loss: dict[str, float] = field(
        default_factory=dict
    )  # median loss vs optimal
    skills: dict[str, float | None] = field(default_factory=dict)
    strengths: list[str] = field(default_factory=list)
    weaknesses: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class DriverPerformanceAnalyzer:
    """Strengths and weaknesses of each driver per section and per skill.

    - section loss: median over the driver's clean laps of (section time − the
      session's best time in that section);
    - braking / throttle: the mean section loss over sections classified as braking
      zones / throttle sections (by the brake use on the fastest lap);
    - consistency: robust spread (1.4826 × MAD) of clean lap times;
    - smoothness / aggression / precision: the mean of the appliance's per-lap driver
      input metrics.
    Strengths are the three sections with the least loss, weaknesses the three with
    the most (only those with at least 0.02 s of loss).
    """

    WEAKNESS_MIN_S = 0.02

    def __init__(self, sessions: list[CompactedSession]) -> None:
        self.sessions = sessions
        self.comparison = LapComparisonTool(sessions)

    def profiles(self) -> dict[str, DriverProfile]:
        optimal = self.comparison.optimal()
        by_driver: dict[str, list[LapSections]] = {}
        for cut in self.comparison.cut:
            by_driver.setdefault(cut.lap.driver, []).append(cut)
        laps = [lap for s in self.sessions for lap in s.laps]
        out: dict[str, DriverProfile] = {}
        for driver in sorted({lap.driver for lap in laps}):
            mine = [lap for lap in laps if lap.driver == driver]
            clean = [lap.lap_time for lap in mine if lap.clean and lap.lap_time]
            profile = DriverProfile(
                driver=driver,
                laps=len(mine),
                clean_laps=len(clean),
                best_lap=min(clean) if clean else None,
                mean_lap=statistics.fmean(clean) if clean else None,
                consistency_s=robust_spread(clean),
            )
            cuts = by_driver.get(driver, [])
            if optimal is not None and cuts:
                loss = np.median(
                    np.vstack([c.times for c in cuts]) - np.asarray(optimal.best),
                    axis=0,
                )
                profile.section_loss = {
                    name: float(v)
                    for name, v in zip(optimal.sections, loss, strict=True)
                }
                ranked = sorted(
                    profile.section_loss, key=profile.section_loss.__getitem__
                )
                profile.strengths = ranked[:3]
                profile.weaknesses = [
                    s
                    for s in reversed(ranked[-3:])
                    if profile.section_loss[s] >= self.WEAKNESS_MIN_S
                ]
                for kind in ("braking", "throttle"):
                    chosen = [
                        float(v)
                        for v, k in zip(loss, optimal.kinds, strict=True)
                        if k == kind
                    ]
                    profile.skills[kind] = statistics.fmean(chosen) if chosen else None
            profile.skills["consistency"] = profile.consistency_s
            for metric in ("input_smoothness", "input_aggression", "input_precision"):
                values = [
                    float(v)
                    for v in (getattr(lap, metric) for lap in mine if lap.clean)
                    if v is not None
                ]
                profile.skills[metric.removeprefix("input_")] = (
                    statistics.fmean(values) if values else None
                )
            out[driver] = profile
        return out
