"""Live training mode: the board that says which car trains for which goals, and the per-car trainer the core runs on every lap.

The core's ``training`` detector (pitbox_appliance/detectors/training.py) owns one
:class:`LiveTrainer` per car. The API marks a session as training and puts its plan
on :data:`BOARD` (same process: the API runs on the core's loop); the trainer reads
it at every lap. What the trainer measures goes two ways: its events go out through
the core (stored and published, like every detector's), and its profile updates and
shim notices wait in the board's outbox, which the API drains off the ingest thread
(the coaching tables' single writer is the :class:`ProfileStore` there; the ingest
thread holds the core's write transaction and must never wait on SQLite itself).
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from driver_pc.protocol.events import EventKind
from pitbox_appliance.analysis.corners import CornerMap
from pitbox_appliance.coaching.badges import BadgingSystem, Measured
from pitbox_appliance.coaching.corner_metrics import (
    CHANNELS,
    CornerLap,
    lap_corner_metrics,
    spread,
)
from pitbox_appliance.coaching.profile import (
    MEASURES,
    AlertKind,
    Badge,
    DriverSettings,
    FatigueModelState,
    MetricType,
    TrainingGoal,
    goal_progress,
)

FloatArray = npt.NDArray[np.float64]

#: A goal's current value is the median of this many of the trainee's latest laps.
CURRENT_LAPS = 3
#: The consistency measure (corner-time SD) needs this many laps.
CONSISTENCY_LAPS = 5
#: No lap is longer: frames older than this are dropped when laps stop completing.
MAX_BUFFER_S = 30 * 60.0
#: Laps kept per car for badges (the longest rule window is well below it).
HISTORY_LAPS = 60
#: A notice to the shim only when progress moved at least this much (or completed).
NOTICE_STEP = 0.10


@dataclass(slots=True)
class LivePlan:
    """What the board holds for a car in training mode."""

    session_id: int
    car: str
    driver: str  # the trainee ("" = whoever drives)
    track_id: str
    corners: CornerMap
    length_m: float
    goals: list[TrainingGoal]
    held_badges: set[tuple[str, str]] = field(default_factory=set)
    #: The plan's stop rule: fatigue at or above this ends the practice (None: none).
    stop_fatigue: float | None = None
    stop_sent: bool = False


@dataclass(frozen=True, slots=True)
class GoalUpdate:
    """A goal measured again after a lap."""

    goal_id: str
    current_value: float
    progress: float
    laps_measured: int
    completed_at: float | None


@dataclass(frozen=True, slots=True)
class BadgeAward:
    """A badge earned live, to store in the driver's profile."""

    driver: str
    badge: Badge
    session_id: int


@dataclass(frozen=True, slots=True)
class Notice:
    """A short team message for the driving PC of ``car``."""

    car: str
    driver: str
    alert: AlertKind
    text: str


Update = GoalUpdate | BadgeAward | Notice


class TrainingBoard:
    """Process-wide: cars in training mode, drivers' settings and fatigue models, the outbox."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: dict[str, LivePlan] = {}
        self._settings: dict[str, DriverSettings] = {}
        self._fatigue: dict[str, FatigueModelState] = {}
        self._outbox: deque[Update] = deque(maxlen=10_000)

    def activate(self, plan: LivePlan) -> None:
        with self._lock:
            self._plans[plan.car] = plan

    def deactivate(self, car: str) -> None:
        with self._lock:
            self._plans.pop(car, None)

    def plan_for(self, car: str) -> LivePlan | None:
        return self._plans.get(car)

    def plans(self) -> list[LivePlan]:
        return list(self._plans.values())

    def set_settings(self, driver: str, settings: DriverSettings) -> None:
        with self._lock:
            self._settings[driver] = settings

    def settings_of(self, driver: str) -> DriverSettings:
        return self._settings.get(driver) or DriverSettings()

    def set_fatigue_model(self, driver: str, model: FatigueModelState) -> None:
        with self._lock:
            self._fatigue[driver] = model

    def fatigue_model(self, driver: str) -> FatigueModelState | None:
        """The driver's learned fatigue model (the fatigue analyzer's seam)."""
        return self._fatigue.get(driver)

    def post(self, update: Update) -> None:
        self._outbox.append(update)

    def drain(self) -> list[Update]:
        """Everything posted since the last drain, oldest first."""
        out = []
        while self._outbox:
            out.append(self._outbox.popleft())
        return out

    def reset(self) -> None:
        """Forget everything (tests; a core restart starts empty anyway)."""
        with self._lock:
            self._plans.clear()
            self._settings.clear()
            self._fatigue.clear()
            self._outbox.clear()


#: The board of this process.
BOARD = TrainingBoard()

#: (kind, session_time, payload, publish): what the trainer found, for the detector.
Found = tuple[str, float, dict[str, Any], bool]


@dataclass(slots=True)
class _LapRecord:
    lap: int
    driver: str
    lap_time: float | None
    fuel_used: float | None
    stint_started: float
    corners: Mapping[int, CornerLap]


class LiveTrainer:
    """One car's live training: per-lap corner measures, goal progress, badges."""

    def __init__(self, board: TrainingBoard = BOARD) -> None:
        self.board = board
        self.badging = BadgingSystem()
        self._chunks: list[FloatArray] = []
        self._history: list[_LapRecord] = []
        self._notified: dict[str, float] = {}

    def on_frames(self, car: str, columns: Mapping[str, Any] | None) -> None:
        """Buffer the measured channels of a batch (only while the car trains)."""
        if self.board.plan_for(car) is None or columns is None:
            self._chunks = []
            return
        block = np.empty((len(columns["SessionTime"]), len(CHANNELS)), np.float64)
        for i, name in enumerate(CHANNELS):
            block[:, i] = columns[name]
        self._chunks.append(block)
        if len(self._chunks) > 1 and block[-1, 0] - self._chunks[0][0, 0] > (
            MAX_BUFFER_S
        ):
            data = np.concatenate(self._chunks)
            self._chunks = [data[data[:, 0] >= data[-1, 0] - MAX_BUFFER_S]]

    def on_lap(
        self,
        car: str,
        driver: str,
        lap_number: int,
        start: float | None,
        end: float,
        lap_time: float | None,
        fuel_used: float | None,
        pit_lap: bool,
        stint_started: float,
        fatigue: float | None = None,
    ) -> list[Found]:
        """Measure a completed lap; goal progress and badges as events.

        ``fatigue`` (the fatigue analyzer's level after this lap) past the plan's
        stop rule sends the driver one "end the practice" notice.
        """
        plan = self.board.plan_for(car)
        data = np.concatenate(self._chunks) if self._chunks else np.empty((0, 5))
        rest = data[data[:, 0] >= end]
        self._chunks = [rest] if len(rest) else []
        if plan is None or start is None or lap_time is None or pit_lap:
            return []
        if plan.driver and driver != plan.driver:
            return []
        if (
            fatigue is not None
            and plan.stop_fatigue is not None
            and fatigue >= plan.stop_fatigue
            and not plan.stop_sent
        ):
            plan.stop_sent = True
            self._notify(
                plan,
                driver,
                AlertKind.DRIVER_FATIGUE_UPDATE,
                f"Fatigue {fatigue:.2f}: end the practice, box",
            )
        lap = data[(data[:, 0] >= start) & (data[:, 0] < end)]
        columns = {name: lap[:, i] for i, name in enumerate(CHANNELS)}
        corners = lap_corner_metrics(columns, plan.corners, plan.length_m)
        self._history = [
            *self._history[-HISTORY_LAPS:],
            _LapRecord(lap_number, driver, lap_time, fuel_used, stint_started, corners),
        ]
        mine = [r for r in self._history if r.driver == driver]
        out: list[Found] = []
        for goal in plan.goals:
            out += self._goal(plan, goal, mine, lap_number, end)
        out += self._badges(plan, driver, mine, end)
        return out

    # ---- goals ---------------------------------------------------------------------
    def _goal(
        self,
        plan: LivePlan,
        goal: TrainingGoal,
        laps: list[_LapRecord],
        lap_number: int,
        at: float,
    ) -> list[Found]:
        numbers = [int(c.lstrip("T")) for c in goal.corner_ids]
        current = goal_value(goal.measure, laps, numbers)
        if current is None:
            return []
        progress = goal_progress(goal.baseline_value, goal.target_value, current)
        completed = goal.completed_at
        if progress >= 1.0 and completed is None:
            completed = at
        goal.current_value, goal.progress, goal.completed_at = (
            current,
            progress,
            completed,
        )
        goal.laps_measured += 1
        self.board.post(
            GoalUpdate(goal.id, current, progress, goal.laps_measured, completed)
        )
        unit = MEASURES[goal.metric_type][1]
        corners = "+".join(goal.corner_ids)
        detail = (
            f"lap {lap_number}: {goal.measure} {current:.2f} "
            f"(from {goal.baseline_value:.2f}, target {goal.target_value:.2f} {unit})"
        )
        payload = {
            "driver": laps[-1].driver,
            "goal_id": goal.id,
            "goal": goal.description,
            "progress": round(progress, 3),
            "detail": detail,
        }
        last = self._notified.get(goal.id)
        if (
            last is None
            or abs(progress - last) >= NOTICE_STEP
            or (progress >= 1.0 and last < 1.0)
        ):
            self._notified[goal.id] = progress
            short = _short_metric(goal.metric_type)
            text = (
                f"{corners} {short} done!"
                if progress >= 1.0
                else f"{corners} {short} {progress:.0%}: {current:.1f}/{goal.target_value:.1f}"
            )
            self._notify(plan, laps[-1].driver, AlertKind.TRAINING_GOAL_PROGRESS, text)
        return [(EventKind.TRAINING_GOAL_PROGRESS.value, at, payload, True)]

    # ---- badges --------------------------------------------------------------------
    def _badges(
        self, plan: LivePlan, driver: str, laps: list[_LapRecord], at: float
    ) -> list[Found]:
        measured = measure_laps(laps, self.badging)
        found = self.badging.earned(
            driver, measured, plan.held_badges, at=at, session_id=plan.session_id
        )
        out: list[Found] = []
        for badge in found:
            plan.held_badges.add((badge.category.value, badge.level.value))
            self.board.post(BadgeAward(driver, badge, plan.session_id))
            evidence = badge.evidence
            payload = {
                "driver": driver,
                "badge_id": badge.id,
                "badge": badge.name,
                "reason": f"{badge.description}; laps {evidence.laps[0]}-"
                f"{evidence.laps[-1]}",
            }
            out.append((EventKind.BADGE_EARNED.value, at, payload, True))
            # The evidence, stored with the session (compacted with its events).
            out.append(
                ("badge_evidence", at, badge.as_json() | {"driver": driver}, False)
            )
            self._notify(plan, driver, AlertKind.BADGE_EARNED, f"Badge: {badge.name}")
        return out

    def _notify(self, plan: LivePlan, driver: str, alert: AlertKind, text: str) -> None:
        settings = self.board.settings_of(driver)
        if alert not in settings.shim_alerts:
            return
        self.board.post(
            Notice(plan.car, driver, alert, text[: settings.message_max_chars])
        )


def goal_value(
    measure: str, laps: list[_LapRecord], corners: list[int]
) -> float | None:
    """The goal's measure over the latest laps: median per corner, mean over corners.

    ``corner_time_sd_s`` is the SD of the corner's time over the latest
    ``CONSISTENCY_LAPS`` laps instead.
    """
    values = []
    for number in corners:
        if measure == "corner_time_sd_s":
            times = [
                r.corners[number].time_s
                for r in laps[-CONSISTENCY_LAPS:]
                if number in r.corners
            ]
            got = spread(times) if len(times) >= 3 else None
        else:
            per = [
                v
                for r in laps[-CURRENT_LAPS:]
                if number in r.corners
                and (v := r.corners[number].value(measure)) is not None
            ]
            got = float(statistics.median(per)) if per else None
        if got is not None:
            values.append(got)
    return float(statistics.fmean(values)) if values else None


def measure_laps(laps: list[_LapRecord], badging: BadgingSystem) -> dict[str, Measured]:
    """Each badge metric over the rule's window of ``laps`` (one driver's, lap order)."""
    out: dict[str, Measured] = {}
    for rule in badging.rules.rules:
        window = laps[-rule.laps :]
        if len(window) < rule.laps:
            continue
        got = _metric(rule.metric, window)
        if got is not None:
            out[rule.metric] = got
    return out


def _metric(metric: str, laps: list[_LapRecord]) -> Measured | None:
    numbers = tuple(r.lap for r in laps)
    if metric == "lap_time_sd_s":
        times = [float(r.lap_time) for r in laps if r.lap_time is not None]
        sd = spread(times)
        return Measured(sd, numbers, tuple(times)) if sd is not None else None
    if metric == "fuel_per_lap_sd_l":
        fuel = [float(r.fuel_used) for r in laps if r.fuel_used is not None]
        if len(fuel) < len(laps):
            return None
        sd = spread(fuel)
        return Measured(sd, numbers, tuple(fuel)) if sd is not None else None
    if metric == "lap_time_slope_s_per_lap":
        stint = [r for r in laps if r.stint_started == laps[-1].stint_started]
        if len(stint) < len(laps):
            return None
        series = np.asarray([r.lap_time for r in stint], dtype=np.float64)
        slope = float(np.polyfit(np.arange(len(series)), series, 1)[0])
        return Measured(slope, numbers, tuple(float(t) for t in series))
    measure = {
        "braking_point_sd_m": "braking_point_m",
        "throttle_pickup_sd_m": "throttle_pickup_m",
    }[metric]
    corners = set.intersection(*(set(r.corners) for r in laps)) if laps else set()
    sds = []
    for number in sorted(corners):
        vals = [v for r in laps if (v := r.corners[number].value(measure)) is not None]
        if len(vals) == len(laps) and (sd := spread(vals)) is not None:
            sds.append(sd)
    if not sds:
        return None
    per_lap = tuple(
        float(
            statistics.fmean(
                [v for n in corners if (v := r.corners[n].value(measure)) is not None]
                or [0.0]
            )
        )
        for r in laps
    )
    return Measured(float(statistics.fmean(sds)), numbers, per_lap)


def _short_metric(metric: MetricType) -> str:
    return {
        MetricType.BRAKING: "brake pt",
        MetricType.THROTTLE: "throttle",
        MetricType.LINE: "min spd",
        MetricType.CONSISTENCY: "consist.",
    }[metric]
