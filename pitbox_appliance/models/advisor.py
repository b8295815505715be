"""ModelAdvisor: runs the models after each completed lap in its own worker thread.

The core hands it every ``lap_completed`` event; it keeps each car's lap history,
predicts the next lap time, the next lap's fuel and the driver's fatigue level (each
beside its baseline, the registry choosing which is used) and hands the result back
through a callback. Never on the ingest thread nor on an asyncio loop.
"""

from __future__ import annotations

import logging
import queue
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from pitbox_appliance.models.baselines import fatigue_baseline
from pitbox_appliance.models.features import (
    LapRecord,
    current_stint,
    fatigue_features,
    fuel_features,
    lap_time_features,
)
from pitbox_appliance.models.predictors import Prediction, Predictor, load_predictor
from pitbox_appliance.models.runtime import ModelError

logger = logging.getLogger(__name__)

HISTORY_LAPS = 60  # laps remembered per car: enough for a stint's features
QUEUE_LIMIT = 1000

PredictionsCallback = Callable[[str, dict[str, Any]], None]


class ModelAdvisor:
    """Per-car model predictions, computed on a worker thread after each lap."""

    def __init__(self, on_predictions: PredictionsCallback) -> None:
        self.on_predictions = on_predictions
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(
            QUEUE_LIMIT
        )
        self._history: dict[str, list[LapRecord]] = {}
        self._predictors: dict[str, Predictor] | None = None
        self._thread = threading.Thread(target=self._run, name="models", daemon=True)
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=10)

    def submit(self, car: str, lap: dict[str, Any]) -> None:
        """Queue a ``lap_completed`` payload of ``car``; never blocks the caller."""
        try:
            self._queue.put_nowait((car, lap))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            car, lap = item
            try:
                predictions = self.observe(car, lap)
            except (ModelError, ValueError, TypeError, KeyError) as exc:
                logger.warning(
                    "models: no predictions for %s lap %s: %s", car, lap.get("lap"), exc
                )
                continue
            except Exception:
                # The worker must outlive any one bad lap; the traceback is logged.
                logger.exception("models: predicting %s lap %s failed", car, lap)
                continue
            if predictions:
                self.on_predictions(car, predictions)

    def observe(self, car: str, lap: dict[str, Any]) -> dict[str, Any]:
        """Add one completed lap of ``car`` and predict from its history (synchronous)."""
        record = LapRecord(
            lap=int(lap["lap"]),
            time_s=_optional_float(lap.get("time")),
            fuel_l=_optional_float(lap.get("fuel")),
            pit=bool(lap.get("pit")),
            driver=str(lap.get("driver") or ""),
        )
        history = self._history.setdefault(car, [])
        history.append(record)
        del history[:-HISTORY_LAPS]
        return self.predict(history)

    def predict(self, history: list[LapRecord]) -> dict[str, Any]:
        """Every model's prediction from a car's lap history (oldest first)."""
        started = time.perf_counter()
        predictors = self._load()
        out: dict[str, Any] = {"lap": history[-1].lap}
        stint = current_stint(history)
        # The stint's timed laps off pit road, with their index in the stint (tyre age).
        indices, racing = [], []
        for index, lap in enumerate(stint):
            if not lap.pit and lap.time_s is not None:
                indices.append(index)
                racing.append(lap.time_s)
        found = lap_time_features(racing, indices) if not history[-1].pit else None
        if found is not None:
            x, reference = found
            pace = 0.5 * racing[-1] + 0.5 * statistics.median(racing[-8:])
            out["next_lap_time_s"] = _as_dict(
                predictors["lap_time"].predict(x, reference, pace)
            )
        found = fuel_features(history)
        if found is not None:
            x, reference = found
            out["fuel_next_lap_l"] = _as_dict(
                predictors["fuel_per_lap"].predict(x, reference, reference)
            )
        found = fatigue_features(history)
        if found is not None:
            x, _ = found
            params = predictors["fatigue"].entry.baseline_params
            baseline = fatigue_baseline(
                float(x[0]), params.get("intercept", 0.0), params.get("slope", 0.0)
            )
            out["fatigue_level"] = _as_dict(
                predictors["fatigue"].predict(x, 0.0, baseline)
            )
        out["compute_ms"] = round(1000 * (time.perf_counter() - started), 3)
        return out

    def _load(self) -> dict[str, Predictor]:
        if self._predictors is None:
            self._predictors = {
                name: load_predictor(name)
                for name in ("lap_time", "fuel_per_lap", "fatigue")
            }
        return self._predictors


def _as_dict(prediction: Prediction) -> dict[str, Any]:
    return {
        "value": round(prediction.value, 4),
        "source": prediction.source,
        "model": None
        if prediction.model_value is None
        else round(prediction.model_value, 4),
        "baseline": round(prediction.baseline_value, 4),
    }


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
