"""Live training mode as a detector: goal progress and badges measured on every lap of a car in training (pitbox_appliance/coaching)."""

from __future__ import annotations

from driver_pc.protocol.events import EventKind
from pitbox_appliance.coaching.corner_metrics import CHANNELS
from pitbox_appliance.coaching.live import LiveTrainer
from pitbox_appliance.detectors.base import (
    BatchContext,
    Emission,
    Frames,
    LapContext,
    SharedState,
    register_detector,
)


@register_detector(
    "training",
    channels=CHANNELS,
    emits=(EventKind.TRAINING_GOAL_PROGRESS, EventKind.BADGE_EARNED),
    stores=("badge_evidence",),
    order=200,
)
class TrainingDetector:
    """Runs :class:`LiveTrainer` for one car; silent unless its session is marked as training."""

    name = "training"

    def __init__(self) -> None:
        self.trainer = LiveTrainer()
        self._car = ""

    def on_frames(
        self, frames: Frames, ctx: BatchContext, shared: SharedState
    ) -> list[Emission]:
        self._car = ctx.car
        names = frames.dtype.names or ()
        columns = (
            {c: frames[c] for c in CHANNELS}
            if all(c in names for c in CHANNELS)
            else None
        )
        self.trainer.on_frames(ctx.car, columns)
        return []

    def on_lap(self, lap: LapContext, shared: SharedState) -> list[Emission]:
        if lap.start_time is not None and shared.incident_between(
            lap.start_time, lap.end_time
        ):
            pit = True  # an incident lap measures the recovery, not the skill
        else:
            pit = lap.pit_lap
        found = self.trainer.on_lap(
            lap.car,
            lap.driver,
            lap.lap_number,
            lap.start_time,
            lap.end_time,
            lap.lap_time,
            lap.fuel_used,
            pit,
            lap.stint_started,
            shared.fatigue,
        )
        return [
            Emission(EventKind(kind) if publish else kind, at, payload, publish)
            for kind, at, payload, publish in found
        ]
