"""ExtendedDriverProfile (seed §3.2) and driver settings as typed models, serialised in the seed's camelCase."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class MetricType(StrEnum):
    """What a training goal trains (seed §3.2 ``metricType``)."""

    BRAKING = "braking"
    THROTTLE = "throttle"
    LINE = "line"
    CONSISTENCY = "consistency"


class BadgeLevel(StrEnum):
    """Badge levels, lowest first."""

    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"
    PLATINUM = "platinum"


class BadgeCategory(StrEnum):
    """Badge categories (seed §3.2; ``tires`` as the seed spells it)."""

    BRAKING = "braking"
    THROTTLE = "throttle"
    CONSISTENCY = "consistency"
    FUEL = "fuel"
    TIRES = "tires"


#: The measure behind each metric type, its unit and which way is better.
MEASURES: dict[MetricType, tuple[str, str, str]] = {
    MetricType.BRAKING: ("braking_point_m", "m before the apex", "lower"),
    MetricType.THROTTLE: ("throttle_pickup_m", "m after the apex", "lower"),
    MetricType.LINE: ("min_speed_kph", "km/h at the apex", "higher"),
    MetricType.CONSISTENCY: (
        "corner_time_sd_s",
        "s spread through the corner",
        "lower",
    ),
}


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
    )

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, in the seed's camelCase."""
        return self.model_dump(mode="json", by_alias=True)


class ReferenceLap(_Model):
    """The lap a goal's targets were measured on: a teammate's or another session's."""

    session_id: int
    session_key: str = ""
    driver: str
    lap_number: int
    lap_time: float | None = None


class TrainingGoal(_Model):
    """One goal: a measure at some corners of a track, from a baseline to a target."""

    id: str
    description: str
    track_id: str
    corner_ids: list[str]
    metric_type: MetricType
    measure: str = Field(description="the measured quantity, see MEASURES")
    baseline_value: float
    target_value: float
    current_value: float
    progress: float = Field(ge=0.0, le=1.0)
    created_at: float
    completed_at: float | None = None
    reference: ReferenceLap | None = None
    laps_measured: int = 0


class BadgeEvidence(_Model):
    """What earned a badge: the rule's metric, its value and threshold, the laps."""

    metric: str
    value: float
    threshold: float
    session_id: int | None = None
    laps: list[int]
    values: list[float]


class Badge(_Model):
    """A badge earned (seed §3.2) with the evidence stored beside it."""

    id: str
    name: str
    description: str
    level: BadgeLevel
    category: BadgeCategory
    earned_at: float
    evidence: BadgeEvidence


class FatigueModelState(_Model):
    """A driver's own fatigue model (seed §3.2 ``fatigueModel``), learned from their stints.

    ``baseline``: the input precision of their fresh laps (the fatigue analyzer's
    baseline); ``current_level``: the last fatigue level 0..1; ``risk_threshold``: the
    level from which their lap times fall away; ``recovery_rate``: fatigue shed per
    hour out of the car; ``basis`` says what it was learned from.
    """

    baseline: float | None = None
    current_level: float = 0.0
    risk_threshold: float = 0.7
    recovery_rate: float = 0.5
    last_update: float = 0.0
    stints: int = 0
    basis: str = "default"


class AlertKind(StrEnum):
    """Alerts that can reach a driver's shim as a short message."""

    TRAINING_GOAL_PROGRESS = "training_goal_progress"
    BADGE_EARNED = "badge_earned"
    DRIVER_FATIGUE_UPDATE = "driver_fatigue_update"
    DAMAGE_ALERT = "damage_alert"
    DRAFTING_OPPORTUNITY = "drafting_opportunity"


class DriverSettings(_Model):
    """Per-driver preferences; they follow the driver to whichever PC drives."""

    units: str = Field("metric", pattern="^(metric|imperial)$")
    shim_alerts: list[AlertKind] = Field(
        default_factory=lambda: [
            AlertKind.TRAINING_GOAL_PROGRESS,
            AlertKind.BADGE_EARNED,
            AlertKind.DRIVER_FATIGUE_UPDATE,
        ]
    )
    message_seconds: float = Field(8.0, ge=1.0, le=60.0)
    message_max_chars: int = Field(60, ge=16, le=200)


class ExtendedDriverProfile(_Model):
    """A driver's profile (seed §3.2) as stored on the appliance and synced with sessions."""

    driver: str
    user_id: int | None = None
    training_goals: list[TrainingGoal] = Field(default_factory=list)
    badges: list[Badge] = Field(default_factory=list)
    fatigue_model: FatigueModelState = Field(default_factory=FatigueModelState)
    preferred_setups: dict[str, str] = Field(default_factory=dict)
    settings: DriverSettings = Field(default_factory=DriverSettings)
    skill_history: list[dict[str, Any]] = Field(default_factory=list)
    updated_at: float = 0.0


def goal_progress(baseline: float, target: float, current: float) -> float:
    """Share of the way from ``baseline`` to ``target`` that ``current`` has come, 0..1."""
    span = target - baseline
    if span == 0:
        return 1.0
    return min(1.0, max(0.0, (current - baseline) / span))
