"""Typed events the appliance publishes about a car: every kind, its payload schema, one encoder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from driver_pc.protocol.live import StrategySnapshot


class EventKind(StrEnum):
    """Every event kind on ``pitbox/live/<car>/events`` and the API's event stream.

    The names are the seed plan's ``ExtendedEventType`` (snake_case), the product's
    public API; the foundation's own kinds follow the same scheme (docs/decisions.md).
    """

    LAP_COMPLETED = "lap_completed"
    DRIVER_CHANGE = "driver_change"
    COMMAND_RESULT = "command_result"
    DRIVER_FATIGUE_UPDATE = "driver_fatigue_update"
    INCIDENT_DETECTED = "incident_detected"
    TRAINING_GOAL_PROGRESS = "training_goal_progress"
    BADGE_EARNED = "badge_earned"
    STRATEGY_RECOMMENDATION = "strategy_recommendation"
    DRAFTING_OPPORTUNITY = "drafting_opportunity"
    DAMAGE_ALERT = "damage_alert"
    SESSION_REPORT_READY = "session_report_ready"
    VIDEO_SEGMENT_READY = "video_segment_ready"
    DRIVER_REGISTERED = "driver_registered"
    SETUP_IMPACT_ANALYSIS = "setup_impact_analysis"


class EventError(ValueError):
    """An event payload that does not match its kind's schema."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LapCompleted(_Payload):
    """A lap of the car is in.

    ``invalid``: reset, towed or given no time by iRacing (``time`` None);
    ``refuelled``: fuel rose during it (``fuel`` None).
    """

    lap: int
    time: float | None
    fuel: float | None
    pit: bool
    driver: str
    invalid: bool = False
    refuelled: bool = False


class DriverChanged(_Payload):
    user_id: int
    user_name: str
    source: str


class DriverRegistered(_Payload):
    """A driver PC said who sits at it (``/api/v1/driver/register``), driving or not."""

    source: str
    driver_name: str
    sim: str
    user_id: int | None = None
    version: str | None = None


class CommandResultEvent(_Payload):
    command_id: str
    ok: bool
    detail: str
    # Who sent the command (the dashboard's logged-in user); None for an API token.
    by: str | None = None


class DriverFatigueUpdate(_Payload):
    driver: str
    lap: int
    # 0 = fresh, 1 = as tired as the model has seen.
    fatigue: float = Field(ge=0.0, le=1.0)
    stint_minutes: float
    advice: str | None = None
    basis: str = ""


class IncidentDetected(_Payload):
    incident: Literal["off_track", "spin", "contact", "lockup", "other"]
    session_time: float
    lap: int
    lap_dist_pct: float
    # iRacing's incident points for it, where the data carries the counter.
    points: int | None = None
    confidence: float = Field(ge=0.0, le=1.0, default=1.0)


class TrainingGoalProgress(_Payload):
    driver: str
    goal_id: str
    goal: str
    progress: float = Field(ge=0.0, le=1.0)
    detail: str = ""


class BadgeEarned(_Payload):
    driver: str
    badge_id: str
    badge: str
    reason: str


class DraftingOpportunity(_Payload):
    other_car: str
    other_idx: int
    gap_s: float
    closing_rate_s_per_lap: float
    # Laps until the gap closes to a passing chance; None if not closing.
    laps_to_pass: float | None
    in_draft: bool
    direction: Literal["ahead", "behind"]


class DamageAlert(_Payload):
    session_time: float
    lap: int
    severity: Literal["minor", "moderate", "severe"]
    lap_time_loss_s: float | None
    repair_time_left_s: float | None
    detail: str = ""


class SessionReportReady(_Payload):
    session_key: str
    url: str
    pdf_url: str | None = None


class VideoSegmentReady(_Payload):
    source: str
    # Relative to the appliance's video directory.
    path: str
    start_time: float
    end_time: float
    bytes: int
    sha256: str


class SetupImpactAnalysis(_Payload):
    driver: str
    changes: list[dict[str, Any]]
    lap_time_delta_s: float | None
    uncertainty_s: float | None
    laps_before: int
    laps_after: int


PAYLOADS: dict[EventKind, type[BaseModel]] = {
    EventKind.LAP_COMPLETED: LapCompleted,
    EventKind.DRIVER_CHANGE: DriverChanged,
    EventKind.COMMAND_RESULT: CommandResultEvent,
    # The whole strategy, as the live state carries it (driver_pc/protocol/live.py).
    EventKind.STRATEGY_RECOMMENDATION: StrategySnapshot,
    EventKind.DRIVER_FATIGUE_UPDATE: DriverFatigueUpdate,
    EventKind.INCIDENT_DETECTED: IncidentDetected,
    EventKind.TRAINING_GOAL_PROGRESS: TrainingGoalProgress,
    EventKind.BADGE_EARNED: BadgeEarned,
    EventKind.DRAFTING_OPPORTUNITY: DraftingOpportunity,
    EventKind.DAMAGE_ALERT: DamageAlert,
    EventKind.SESSION_REPORT_READY: SessionReportReady,
    EventKind.VIDEO_SEGMENT_READY: VideoSegmentReady,
    EventKind.DRIVER_REGISTERED: DriverRegistered,
    EventKind.SETUP_IMPACT_ANALYSIS: SetupImpactAnalysis,
}


class StoredKind(StrEnum):
    """Event kinds the core itself stores but never publishes (detectors declare theirs)."""

    CAR_SETUP = (
        "car_setup"  # {update, setup}: each change of the session info's CarSetup
    )
    CAMERA_VIEW = "camera_view"  # CameraView: what a PC out of the car was watching


class CameraView(_Payload):
    """What the sim's camera of one PC out of the car showed from ``start`` to ``end``.

    A spectating teammate's or broadcast PC's ``CamCarIdx``/``CamGroupNumber``, one
    piece per unchanged view (at most ``CAMERA_PIECE_S`` long, so a PC that dies
    loses little). The core stores only the driving PC's frames; these pieces are how
    the broadcast camera reaches the sponsor figures (issue 15 §3).
    """

    source: str
    start: float
    end: float
    car_idx: int
    group: int | None = None


CAMERA_PIECE_S = 10.0


@dataclass(frozen=True, slots=True)
class Event:
    """One event about a car, as the core raises it: the kind and its typed payload."""

    car: str
    kind: EventKind
    payload: BaseModel

    def __post_init__(self) -> None:
        if not isinstance(self.payload, PAYLOADS[self.kind]):
            raise EventError(
                f"{self.kind}: payload is a {type(self.payload).__name__}, "
                f"not a {PAYLOADS[self.kind].__name__}"
            )

    @classmethod
    def of(cls, car: str, kind: str, payload: Mapping[str, Any]) -> Event:
        """Validate ``payload`` against its kind's schema; raises EventError."""
        event_kind = _kind(kind)
        return cls(car, event_kind, payload_model(event_kind, payload))

    def message(self) -> dict[str, Any]:
        """What is published: ``{"kind", "car", **payload}`` (JSON-ready)."""
        body = self.payload.model_dump(mode="json")
        if "kind" in body or "car" in body:
            raise EventError(
                f"{self.kind}: payload may not use the keys 'kind' or 'car'"
            )
        return {"kind": self.kind.value, "car": self.car, **body}


def payload_model(kind: EventKind, payload: Mapping[str, Any]) -> BaseModel:
    """``payload`` validated by its kind's schema; raises EventError."""
    try:
        return PAYLOADS[kind].model_validate(payload)
    except ValidationError as exc:
        raise EventError(f"{kind}: {exc}") from None


def event_payload(kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``payload`` against its kind's schema; the JSON-ready payload, or EventError."""
    return payload_model(_kind(kind), payload).model_dump(mode="json")


def encode_event(car: str, kind: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The message published for one event: ``{"kind", "car", **payload}``."""
    return Event.of(car, kind, payload).message()


def _kind(kind: str) -> EventKind:
    try:
        return EventKind(kind)
    except ValueError:
        raise EventError(f"unknown event kind {kind!r}") from None
