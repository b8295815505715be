"""DriverFatigueAnalyzer: a driver's fatigue 0..1 from per-lap steering corrections and input precision against their fresh baseline, and stint time."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from driver_pc.protocol.events import EventKind
from pitbox_appliance.coaching.live import BOARD
from pitbox_appliance.detectors.base import (
    BatchContext,
    Emission,
    Frames,
    LapContext,
    SharedState,
    register_detector,
)

# A driver's first clean laps set their fresh baselines (precision, corrections).
BASELINE_LAPS = 3
# The level uses the median of the last few clean laps' metrics (one lap is noisy).
RECENT_LAPS = 5
# 1/precision − 1 is the ratio of corrective to deliberate input movement; fatigue
# adds corrections, so that ratio grows. Level = (ratio / baseline ratio − 1) / GAIN.
# GAIN was fitted on one simulated race (seed 5) and scored on others (docs/detectors.md).
GAIN = 2.3
# Steering corrections (rad/s of 0.1–0.5 s steering bumps, pitbox_appliance/analysis)
# against the driver's fresh baseline: term = (ratio − 1) / CORRECTION_GAIN, so 12 %
# more corrections than fresh reads as fully fatigued. Fitted on the simulator's
# independent-model tuning seeds 5–7 only (docs/detectors.md); its per-lap noise is
# about 4 % of the baseline, so a median of 5 laps moves the term by about ±0.1.
CORRECTION_GAIN = 0.12
# Stint-time prior: 1 − exp(−minutes since the driver got in / TIME_CONSTANT_MIN)
# (not since the last pit exit: a stop without a driver change does not rest them).
TIME_CONSTANT_MIN = 90.0
INPUT_WEIGHT = 0.75  # blend of the input term and the stint-time prior
SLOW_LAP_FACTOR = 1.07  # laps this much slower than the recent median are not judged
EMIT_CHANGE = 0.05  # publish when the level moved this much since the last update ...
EMIT_EVERY_LAPS = 5  # ... or after this many laps
SWAP_ADVICE = 0.7
SWAP_NOW = 0.85


@dataclass(frozen=True, slots=True)
class FatigueFeatures:
    """What a fatigue model gets for one driver at the end of one lap."""

    driver: str
    lap: int
    stint_minutes: float
    precision: tuple[float, ...]  # this driver's clean laps, oldest first
    smoothness: tuple[float, ...]
    aggression: tuple[float, ...]
    baseline_precision: float | None
    steering_corrections: tuple[float, ...] = ()
    baseline_corrections: float | None = None
    seat_minutes: float = 0.0  # since the driver got in (stint_minutes: pit exit)


class FatigueModel(Protocol):
    """The seam for a trained model: returns fatigue 0..1, or None to defer to statistics."""

    def predict(self, features: FatigueFeatures) -> float | None: ...


@dataclass(slots=True)
class _DriverHistory:
    precision: list[float] = field(default_factory=list)
    smoothness: list[float] = field(default_factory=list)
    aggression: list[float] = field(default_factory=list)
    corrections: list[float] = field(default_factory=list)
    baseline: float | None = None
    corrections_baseline: float | None = None
    last_emitted: float | None = None
    last_emitted_lap: int = -(10**9)


@register_detector("fatigue", channels=(), emits=(EventKind.DRIVER_FATIGUE_UPDATE,))
class DriverFatigueAnalyzer:
    """Fatigue per driver, updated on every clean lap, published on change.

    Statistical method (``basis`` "inputs+stint_time"): the per-lap
    ``steering_corrections`` and ``precision`` (pitbox_appliance/analysis) against
    the driver's own first clean laps, the larger of the two, blended with a
    stint-time prior. Set ``model`` to a :class:`FatigueModel` to replace it
    (``basis`` "model"); where the model returns None, statistics answer.
    """

    name = "fatigue"

    def __init__(self, model: FatigueModel | None = None) -> None:
        self.model = model
        self._drivers: dict[str, _DriverHistory] = {}
        self._lap_times: list[float] = []
        # Who is in the car and since when: a pit stop without a driver change
        # does not rest the driver, so the prior counts from the change.
        self._seat: tuple[str, float] | None = None

    def on_frames(
        self, frames: Frames, ctx: BatchContext, shared: SharedState
    ) -> list[Emission]:
        return []

    def on_lap(self, lap: LapContext, shared: SharedState) -> list[Emission]:
        if (
            self._seat is None
            or self._seat[0] != lap.driver
            or not math.isfinite(self._seat[1])
        ):
            self._seat = (lap.driver, lap.stint_started)
        if lap.pit_lap or lap.lap_time is None or lap.inputs is None:
            return []
        times = self._lap_times
        typical = float(np.median(times[-10:])) if len(times) >= 3 else None
        times.append(lap.lap_time)
        if typical is not None and lap.lap_time > typical * SLOW_LAP_FACTOR:
            return []  # a yellow, an incident or traffic: inputs say nothing of fatigue
        if lap.start_time is not None and shared.incident_between(
            lap.start_time, lap.end_time
        ):
            return []  # an incident lap's inputs are recovery, not fatigue
        history = self._drivers.setdefault(lap.driver, _DriverHistory())
        history.precision.append(lap.inputs.precision)
        history.smoothness.append(lap.inputs.smoothness)
        history.aggression.append(lap.inputs.aggression)
        if lap.inputs.steering_corrections is not None:
            history.corrections.append(lap.inputs.steering_corrections)
        if (
            history.corrections_baseline is None
            and len(history.corrections) >= BASELINE_LAPS
        ):
            history.corrections_baseline = float(
                np.median(history.corrections[:BASELINE_LAPS])
            )
        # The driver's own fatigue model (coaching profile), when one was learned:
        # its fresh baseline stands in until this stint's first clean laps set one,
        # and its risk threshold replaces the team-wide swap advice level.
        learned = BOARD.fatigue_model(lap.driver)
        if history.baseline is None and len(history.precision) >= BASELINE_LAPS:
            history.baseline = float(np.median(history.precision[:BASELINE_LAPS]))
        elif history.baseline is None and learned and learned.baseline:
            history.baseline = learned.baseline
        minutes = (
            max(0.0, lap.end_time - lap.stint_started) / 60.0
            if math.isfinite(lap.stint_started)
            else 0.0
        )
        seat_started = self._seat[1]
        seat_minutes = (
            max(0.0, lap.end_time - seat_started) / 60.0
            if math.isfinite(seat_started)
            else 0.0
        )
        level, basis = self._level(lap, history, minutes, seat_minutes)
        shared.fatigue = level
        moved = history.last_emitted is None or abs(level - history.last_emitted) >= (
            EMIT_CHANGE
        )
        if not moved and lap.lap_number - history.last_emitted_lap < EMIT_EVERY_LAPS:
            return []
        history.last_emitted, history.last_emitted_lap = level, lap.lap_number
        advice = None
        advise_at = learned.risk_threshold if learned is not None else SWAP_ADVICE
        if level >= max(SWAP_NOW, advise_at):
            advice = "swap the driver at the next stop"
        elif level >= advise_at:
            advice = "plan a driver swap"
        payload = {
            "driver": lap.driver,
            "lap": lap.lap_number,
            "fatigue": round(level, 3),
            "stint_minutes": round(minutes, 2),
            "advice": advice,
            "basis": basis,
        }
        return [Emission(EventKind.DRIVER_FATIGUE_UPDATE, lap.end_time, payload)]

    def level_of(self, driver: str) -> float | None:
        """The last published level of ``driver``."""
        history = self._drivers.get(driver)
        return history.last_emitted if history else None

    def _level(
        self,
        lap: LapContext,
        history: _DriverHistory,
        minutes: float,
        seat_minutes: float,
    ) -> tuple[float, str]:
        if self.model is not None:
            predicted = self.model.predict(
                FatigueFeatures(
                    driver=lap.driver,
                    lap=lap.lap_number,
                    stint_minutes=minutes,
                    precision=tuple(history.precision),
                    smoothness=tuple(history.smoothness),
                    aggression=tuple(history.aggression),
                    baseline_precision=history.baseline,
                    steering_corrections=tuple(history.corrections),
                    baseline_corrections=history.corrections_baseline,
                    seat_minutes=seat_minutes,
                )
            )
            if predicted is not None and math.isfinite(predicted):
                return _unit(predicted), "model"
        prior = 1.0 - math.exp(-seat_minutes / TIME_CONSTANT_MIN)
        terms = [
            t
            for t in (
                input_term(history.precision[-RECENT_LAPS:], history.baseline),
                correction_term(
                    history.corrections[-RECENT_LAPS:], history.corrections_baseline
                ),
            )
            if t is not None
        ]
        # Either sign of fatigue is enough: drivers differ in where it shows.
        term = max(terms) if terms else None
        if term is None:
            return _unit(prior), "stint_time"
        return _unit(INPUT_WEIGHT * term + (1 - INPUT_WEIGHT) * prior), (
            "inputs+stint_time"
        )


def input_term(recent: list[float], baseline: float | None) -> float | None:
    """Fatigue suggested by recent precision against the fresh baseline, or None."""
    if baseline is None or not recent or not 0 < baseline < 1:
        return None
    current = float(np.median(recent))
    if current <= 0:
        return 1.0
    ratio = (1 / current - 1) / (1 / baseline - 1)
    return _unit((ratio - 1) / GAIN)


def correction_term(recent: list[float], baseline: float | None) -> float | None:
    """Fatigue suggested by recent steering corrections against the fresh baseline."""
    if baseline is None or not recent or baseline <= 0:
        return None
    ratio = float(np.median(recent)) / baseline
    return _unit((ratio - 1) / CORRECTION_GAIN)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))
