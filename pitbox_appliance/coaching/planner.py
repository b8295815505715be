"""TrainingSessionPlanner: a structured plan for the next practice (exercises per corner, laps, reference lap, when to stop)."""

from __future__ import annotations

import math
from typing import Any

from pitbox_appliance.coaching.profile import (
    FatigueModelState,
    MetricType,
    ReferenceLap,
    TrainingGoal,
)

WARMUP_LAPS = 2
MIN_LAPS = 3
MAX_LAPS = 10
#: Consistency needs enough laps for a spread.
CONSISTENCY_LAPS = 6
#: Stop when fatigue reaches this share of the driver's own risk threshold ...
STOP_SHARE = 0.9
#: ... or rises this much over the level the session started at.
STOP_RISE = 0.15


class TrainingSessionPlanner:
    """Turns a driver's open goals and fatigue model into the next practice's plan."""

    def plan(
        self,
        driver: str,
        goals: list[TrainingGoal],
        fatigue: FatigueModelState,
        reference: ReferenceLap | None,
    ) -> dict[str, Any]:
        """The plan as JSON: exercises in order, laps each, reference, stop rule."""
        open_goals = [g for g in goals if g.completed_at is None]
        exercises: list[dict[str, Any]] = []
        for goal in sorted(open_goals, key=lambda g: g.progress):
            remaining = 1.0 - goal.progress
            if goal.metric_type is MetricType.CONSISTENCY:
                laps = CONSISTENCY_LAPS
            else:
                laps = max(MIN_LAPS, min(MAX_LAPS, math.ceil(MAX_LAPS * remaining)))
            exercises.append(
                {
                    "goalId": goal.id,
                    "corners": goal.corner_ids,
                    "metricType": goal.metric_type.value,
                    "focus": goal.description,
                    "laps": laps,
                    "target": goal.target_value,
                    "current": goal.current_value,
                }
            )
        stop_at = round(
            min(fatigue.risk_threshold * STOP_SHARE, fatigue.current_level + STOP_RISE)
            if fatigue.current_level < fatigue.risk_threshold * STOP_SHARE
            else fatigue.risk_threshold * STOP_SHARE,
            3,
        )
        return {
            "driver": driver,
            "warmupLaps": WARMUP_LAPS,
            "exercises": exercises,
            "totalLaps": WARMUP_LAPS + sum(int(e["laps"]) for e in exercises),
            "referenceLap": reference.as_json() if reference else None,
            "stopWhen": {
                "fatigueAbove": stop_at,
                "why": (
                    f"{STOP_SHARE:.0%} of {driver}'s own risk threshold "
                    f"{fatigue.risk_threshold:.2f} or +{STOP_RISE} over the start"
                ),
            },
        }
