"""Long-term trending of each driver across sessions and seasons (SkillProgressionTracker), and training goals and badges: from the synced driver profiles when a session carries them, else derived here."""

from __future__ import annotations

import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
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
    #: The measured metric (default: this module's rule for the category).
    metric: str = ""

    @property
    def badge_id(self) -> str:
        return f"{self.category}-{self.level}"

    def payload(self) -> dict[str, Any]:
        return {
            "driver": self.driver,
            "badge_id": self.badge_id,
            "badge": f"{self.level.title()} {self.category}",
            "reason": f"{self.metric or BADGE_RULES[self.category][0]} = {self.value:.3f} "
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
    #: Set for a goal from a synced profile (the appliance's TrainingGoalGenerator).
    profile_id: str | None = None
    description: str | None = None

    @property
    def goal_id(self) -> str:
        return self.profile_id or f"{_slug(self.driver)}-{self.metric_type}"

    def payload(self) -> dict[str, Any]:
        unit = "s spread" if self.metric_type == "consistency" else "s lost per section"
        return {
            "driver": self.driver,
            "goal_id": self.goal_id,
            "goal": self.description
            or f"{self.metric_type}: from {self.baseline:.3f} to {self.target:.3f} {unit}",
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
        # Per session: the driver profiles synced with it (driver → camelCase JSON).
        self.profiles = {s.path: synced_profiles(s) for s in sessions}

    def profile(self, driver: str, upto: str | None = None) -> dict[str, Any] | None:
        """The newest synced profile of ``driver`` up to session ``upto``."""
        found = None
        for s in self.sessions:
            if upto is not None and self._order(s.path) > self._order(upto):
                break
            found = self.profiles[s.path].get(driver, found)
        return found

    def plan(self, driver: str, upto: str | None = None) -> dict[str, Any] | None:
        """The appliance's TrainingSessionPlanner plan synced with the newest session."""
        for s in reversed(self.sessions):
            if upto is not None and self._order(s.path) > self._order(upto):
                continue
            training = synced_training(s)
            if training and training.get("driver") == driver and training.get("plan"):
                plan = training["plan"]
                return plan if isinstance(plan, dict) else None
        return None

    def trend(self, driver: str) -> list[SessionPoint]:
        return [p for p in self.points if p.driver == driver]

    def drivers(self) -> list[str]:
        return sorted({p.driver for p in self.points})

    def badges_new(self, session_path: str) -> list[Badge]:
        out = self._synced_badges(session_path)
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
                already = any(
                    (b.driver, b.category, b.level)
                    == (badge.driver, badge.category, badge.level)
                    for b in out
                )
                if all(LEVELS.index(b.level) < rank for b in earlier) and not already:
                    out.append(badge)
        return out

    def _synced_badges(self, session_path: str) -> list[Badge]:
        """Badges the appliance awarded live in this session, from the synced profiles."""
        session = next(s for s in self.sessions if s.path == session_path)
        appliance_id = session.manifest.session.get("appliance_session_id")
        out = []
        for driver, profile in self.profiles[session_path].items():
            for b in profile.get("badges", []):
                evidence = b.get("evidence") or {}
                if evidence.get("sessionId") != appliance_id:
                    continue
                category = str(b.get("category"))
                out.append(
                    Badge(
                        driver,
                        category,
                        str(b.get("level")),
                        session_path,
                        float(evidence.get("value", 0.0)),
                        float(evidence.get("threshold", 0.0)),
                        metric=str(evidence.get("metric") or ""),
                    )
                )
        return out

    def goals(self, driver: str, upto: str | None = None) -> list[Goal]:
        """The driver's goals: the synced profile's when it has any, else derived.

        Derived goals halve the driver's first measured value of each skill; progress
        up to session ``upto``.
        """
        profile = self.profile(driver, upto)
        synced = [
            g for g in (profile or {}).get("trainingGoals", []) if isinstance(g, dict)
        ]
        if synced:
            return [
                Goal(
                    driver,
                    str(g["metricType"]),
                    float(g["baselineValue"]),
                    float(g["targetValue"]),
                    float(g["currentValue"]),
                    float(g["progress"]),
                    profile_id=str(g["id"]),
                    description=str(g.get("description") or ""),
                )
                for g in synced
            ]
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


# ---- synced profiles (pitbox_appliance/coaching/sync.py) ------------------------------
PROFILES_FILE = "driver_profiles.json"


def _synced(session: CompactedSession) -> dict[str, Any]:
    root = getattr(session, "root", None)
    if not isinstance(root, Path):
        return {}
    try:
        data = json.loads((root / PROFILES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and data.get("version") == 1 else {}


def synced_profiles(session: CompactedSession) -> dict[str, dict[str, Any]]:
    """The driver profiles compacted with ``session``, by driver (empty for older sets)."""
    return {
        str(p["driver"]): p
        for p in _synced(session).get("profiles", [])
        if isinstance(p, dict) and "driver" in p
    }


def synced_training(session: CompactedSession) -> dict[str, Any] | None:
    """The session's training mark (trainee, reference lap, plan), if it had one."""
    training = _synced(session).get("training")
    return training if isinstance(training, dict) else None


# ---- SkillProgressionTracker ----------------------------------------------------------
#: Metric → lower is better.
LOWER_IS_BETTER = {
    "best_lap": True,
    "mean_lap": True,
    "consistency_s": True,
    "braking_loss_s": True,
    "throttle_loss_s": True,
    "degradation_s_per_lap": True,
    "braking_point_m": True,
    "throttle_pickup_m": True,
    "min_speed_kph": False,
    "corner_time_s": True,
    "corner_time_sd_s": True,
}


@dataclass(frozen=True)
class Trend:
    """One driver's metric over sessions in time order, with its season medians."""

    driver: str
    metric: str
    points: tuple[tuple[str, int, float], ...]  # (session path, season, value)
    slope_per_session: float | None
    change: float | None  # last minus first
    improving: bool | None
    seasons: dict[int, float]


class SkillProgressionTracker:
    """Long-term trends per driver and metric across sessions and seasons.

    From every session's own figures (``session_points``) and, where a session carries
    synced profiles, the per-corner measures the appliance recorded (``skillHistory``:
    the mean over corners of each measure in that session).
    """

    def __init__(self, sessions: list[CompactedSession]) -> None:
        self.sessions = sessions
        self._values: dict[tuple[str, str], list[tuple[str, int, float]]] = {}
        for s in sessions:
            season = s.manifest.partition.season
            for p in session_points(s):
                for metric in (
                    "best_lap",
                    "mean_lap",
                    "consistency_s",
                    "braking_loss_s",
                    "throttle_loss_s",
                    "degradation_s_per_lap",
                ):
                    value = p.metric(metric)
                    if value is not None:
                        self._add(p.driver, metric, s.path, season, value)
            appliance_id = s.manifest.session.get("appliance_session_id")
            for driver, profile in synced_profiles(s).items():
                per: dict[str, list[float]] = {}
                for point in profile.get("skillHistory", []):
                    if point.get("sessionId") == appliance_id and point.get("corner"):
                        per.setdefault(str(point["measure"]), []).append(
                            float(point["value"])
                        )
                for measure, values in per.items():
                    self._add(driver, measure, s.path, season, statistics.fmean(values))

    def _add(
        self, driver: str, metric: str, path: str, season: int, value: float
    ) -> None:
        self._values.setdefault((driver, metric), []).append((path, season, value))

    def drivers(self) -> list[str]:
        return sorted({d for d, _ in self._values})

    def trends(self, driver: str) -> list[Trend]:
        """Every metric of ``driver`` measured in at least one session."""
        out = []
        for (d, metric), points in sorted(self._values.items()):
            if d != driver:
                continue
            values = [v for _, _, v in points]
            slope = (
                float(np.polyfit(np.arange(len(values)), values, 1)[0])
                if len(values) >= 2
                else None
            )
            change = values[-1] - values[0] if len(values) >= 2 else None
            lower = LOWER_IS_BETTER.get(metric, True)
            improving = (
                None if change is None else (change < 0) == lower and change != 0
            )
            seasons: dict[int, list[float]] = {}
            for _, season, value in points:
                seasons.setdefault(season, []).append(value)
            out.append(
                Trend(
                    driver,
                    metric,
                    tuple(points),
                    slope,
                    change,
                    improving,
                    {
                        k: float(statistics.median(v))
                        for k, v in sorted(seasons.items())
                    },
                )
            )
        return out
