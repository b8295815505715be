"""Long-term trending of each driver across sessions, and the training goals and badges derived from it."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cloud_sync.analytics.performance import DriverPerformanceAnalyzer
from cloud_sync.compacted import CompactedSession

LEVELS = ("bronze", "silver", "gold", "platinum")
# category -> (metric, thresholds per level, lower is better); see docs/cloud.md
BADGE_RULES: dict[str, tuple[str, tuple[float, ...]]] = {
    "consistency": ("consistency_s", (0.5, 0.3, 0.2, 0.1)),
    "braking": ("braking_loss_s", (0.10, 0.06, 0.04, 0.02)),
    "throttle": ("throttle_loss_s", (0.10, 0.06, 0.04, 0.02)),
    "tires": ("degradation_s_per_lap", (0.10, 0.05, 0.03, 0.01)),
}
MIN_LAPS_FOR_BADGE = 5
GOAL_METRICS = {
    "braking": "braking_loss_s",
    "throttle": "throttle_loss_s",
    "consistency": "consistency_s",
}
GOAL_FRACTION = 0.5  # a goal asks to halve the baseline


@dataclass
class SessionPoint:
    """One driver's figures in one session (a point of the trend)."""

    session: str
    driver: str
    clean_laps: int
    best_lap: float | None
    mean_lap: float | None
    consistency_s: float | None
    braking_loss_s: float | None
    throttle_loss_s: float | None
    degradation_s_per_lap: float | None
    weaknesses: list[str] = field(default_factory=list)

    def metric(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)


def degradation(session: CompactedSession, driver: str) -> float | None:
    """Mean lap-time slope (s per lap) over the driver's stints with ≥ 5 clean laps."""
    slopes = []
    for stint in {lap.stint for lap in session.laps if lap.driver == driver}:
        laps = [
            lap
            for lap in session.laps
            if lap.driver == driver and lap.stint == stint and lap.clean
        ]
        if len(laps) >= MIN_LAPS_FOR_BADGE:
            x = np.arange(len(laps), dtype=np.float64)
            y = np.asarray([lap.lap_time for lap in laps], dtype=np.float64)
            slopes.append(float(np.polyfit(x, y, 1)[0]))
    return statistics.fmean(slopes) if slopes else None


def session_points(session: CompactedSession) -> list[SessionPoint]:
    """Each driver's trend point for one session."""
    points = []
    for driver, p in DriverPerformanceAnalyzer([session]).profiles().items():
        points.append(
            SessionPoint(
                session=session.path,
                driver=driver,
                clean_laps=p.clean_laps,
                best_lap=p.best_lap,
                mean_lap=p.mean_lap,
                consistency_s=p.consistency_s,
                braking_loss_s=p.skills.get("braking"),
                throttle_loss_s=p.skills.get("throttle"),
                degradation_s_per_lap=degradation(session, driver),
                weaknesses=p.weaknesses,
            )
        )
    return points


@dataclass
class Badge:
    driver: str
    category: str
    level: str
    session: str
    value: float
    threshold: float

    @property
    def badge_id(self) -> str:
        return f"{self.category}-{self.level}"

    def payload(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "badge_id": self.badge_id,
            "badge": f"{self.level.title()} {self.category}",
            "reason": f"{BADGE_RULES[self.category][0]} = {self.value:.3f} "
            f"(≤ {self.threshold}) in {self.session}",
        }


@dataclass
class Goal:
    driver: str
    metric_type: str
    baseline: float
    target: float
    current: float
    progress: float

    @property
    def goal_id(self) -> str:
        return f"{_slug(self.driver)}-{self.metric_type}"

    def payload(self) -> dict[str, Any]:
        unit = "s spread" if self.metric_type == "consistency" else "s lost per section"
        return {
            "driver": self.driver,
            "goal_id": self.goal_id,
            "goal": f"{self.metric_type}: from {self.baseline:.3f} to {self.target:.3f} {unit}",
            "progress": self.progress,
            "detail": f"now {self.current:.3f}",
        }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "driver"


def badge_level(category: str, point: SessionPoint) -> Badge | None:
    """The highest level of ``category`` this session's figures reach, if any."""
    metric, thresholds = BADGE_RULES[category]
    value = point.metric(metric)
    if value is None or point.clean_laps < MIN_LAPS_FOR_BADGE:
        return None
    best: Badge | None = None
    for level, threshold in zip(LEVELS, thresholds, strict=True):
        if value <= threshold:
            best = Badge(point.driver, category, level, point.session, value, threshold)
    return best


class TrainingTracker:
    """Trend per driver over sessions in time order; goals and newly earned badges.

    ``badges_new(session)`` gives the badges a session earned that no earlier session
    of the same driver earned at that level or higher.
    """

    def __init__(self, sessions: list[CompactedSession]) -> None:
        self.sessions = sessions
        self.points = [p for s in sessions for p in session_points(s)]

    def trend(self, driver: str) -> list[SessionPoint]:
        return [p for p in self.points if p.driver == driver]

    def drivers(self) -> list[str]:
        return sorted({p.driver for p in self.points})

    def badges_new(self, session_path: str) -> list[Badge]:
        out = []
        for point in (p for p in self.points if p.session == session_path):
            history = [
                q
                for q in self.trend(point.driver)
                if self._order(q.session) < self._order(session_path)
            ]
            for category in BADGE_RULES:
                badge = badge_level(category, point)
                if badge is None:
                    continue
                earlier = [b for q in history if (b := badge_level(category, q))]
                rank = LEVELS.index(badge.level)
                if all(LEVELS.index(b.level) < rank for b in earlier):
                    out.append(badge)
        return out

    def goals(self, driver: str, upto: str | None = None) -> list[Goal]:
        """Goals from the driver's first measured value of each skill; progress to ``upto``."""
        trend = self.trend(driver)
        if upto is not None:
            trend = [p for p in trend if self._order(p.session) <= self._order(upto)]
        out = []
        for metric_type, metric in GOAL_METRICS.items():
            values = [v for p in trend if (v := p.metric(metric)) is not None]
            if not values or values[0] <= 0:
                continue
            baseline, current = values[0], values[-1]
            target = baseline * GOAL_FRACTION
            progress = float(np.clip((baseline - current) / (baseline - target), 0, 1))
            out.append(Goal(driver, metric_type, baseline, target, current, progress))
        return out

    def _order(self, session_path: str) -> int:
        for i, s in enumerate(self.sessions):
            if s.path == session_path:
                return i
        raise KeyError(session_path)
