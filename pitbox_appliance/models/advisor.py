"""ModelAdvisor: runs the models after each completed lap in its own worker thread.

The core hands it every ``lap_completed`` event; it keeps each car's lap history,
predicts the next lap time, the next lap's fuel and the driver's fatigue level (each
beside its baseline) and hands the result back through a callback. Only the models
that registry.json says won on real held-out data are computed (``LIVE_MODELS``):
a model whose registry default is its baseline is not run live at all, so the pit
wall shows a model only where it earned its place. Never on the ingest thread nor
on an asyncio loop.
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
from pitbox_appliance.models.predictors import Prediction, Predictor
from pitbox_appliance.models.registry import RegistryEntry, load_registry
from pitbox_appliance.models.runtime import ModelError

logger = logging.getLogger(__name__)

HISTORY_LAPS = 60  # laps remembered per car: enough for a stint's features
QUEUE_LIMIT = 1000
BASELINE_GREEN_LAPS = 5  # the lap-time baseline: median of the last five clean laps
# The models the advisor can run live, by the Predictions field each fills.
LIVE_MODELS = {
    "next_lap_time_s": "lap_time",
    "fuel_next_lap_l": "fuel_per_lap",
    "fatigue_level": "fatigue",
}

PredictionsCallback = Callable[[str, dict[str, Any]], None]


class ModelAdvisor:
    """Per-car model predictions, computed on a worker thread after each lap."""

    def __init__(
        self,
        on_predictions: PredictionsCallback,
        registry: dict[str, RegistryEntry] | None = None,
    ) -> None:
        """``registry``: the entries to gate on (default: registry.json)."""
        self.on_predictions = on_predictions
        self._registry = registry
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
        """The winning models' predictions from a car's lap history (oldest first).

        Empty when no model won on real held-out data (nothing to show).
        """
        started = time.perf_counter()
        predictors = self._load()
        if not predictors:
            return {}
        out: dict[str, Any] = {"lap": history[-1].lap}
        stint = current_stint(history)
        # The stint's timed laps off pit road, with their index in the stint (tyre age).
        indices, racing = [], []
        for index, lap in enumerate(stint):
            if not lap.pit and lap.time_s is not None:
                indices.append(index)
                racing.append(lap.time_s)
        found = (
            lap_time_features(racing, indices)
            if "lap_time" in predictors and not history[-1].pit
            else None
        )
        if found is not None:
            x, reference = found
            naive = statistics.median(racing[-BASELINE_GREEN_LAPS:])
            out["next_lap_time_s"] = _as_dict(
                predictors["lap_time"].predict(x, reference, naive)
            )
        found = fuel_features(history) if "fuel_per_lap" in predictors else None
        if found is not None:
            x, reference = found
            out["fuel_next_lap_l"] = _as_dict(
                predictors["fuel_per_lap"].predict(x, reference, reference)
            )
        found = fatigue_features(history) if "fatigue" in predictors else None
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
        """Predictors of the models the registry made the default (won on real data)."""
        if self._predictors is None:
            entries = self._registry if self._registry is not None else load_registry()
            self._predictors = {}
            for name in LIVE_MODELS.values():
                entry = entries.get(name)
                if entry is None or entry.default != "model":
                    logger.info(
                        "models: %s not run live: its baseline won on held-out data",
                        name,
                    )
                    continue
                predictor = Predictor(entry)
                if predictor.use_model:
                    self._predictors[name] = predictor
        return self._predictors

    def live_models(self) -> tuple[str, ...]:
        """Names of the models computed live (the registry's winners)."""
        return tuple(self._load())


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
