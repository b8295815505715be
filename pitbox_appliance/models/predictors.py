"""One predictor per model: runs the TFLite model and its baseline, returns the registry's choice."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from pitbox_appliance.models.baselines import incident_baseline
from pitbox_appliance.models.registry import RegistryEntry, load_registry
from pitbox_appliance.models.runtime import ModelError, TFLiteModel, check_features

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prediction:
    """A regression prediction: the value used, where it came from, and both candidates."""

    value: float
    source: str  # "model" or "baseline"
    model_value: float | None
    baseline_value: float


@dataclass(frozen=True, slots=True)
class ClassPrediction:
    """A classification: the label used, its source, the model's probabilities, the baseline's label."""

    label: str
    source: str
    probabilities: dict[str, float] | None
    baseline_label: str


class Predictor:
    """A regression model from the registry, with its baseline beside it.

    ``predict`` always returns the baseline's value too; ``value`` is the model's
    only where the registry made the model the default. Without a TFLite runtime
    the baseline is used, with a log line.
    """

    def __init__(self, entry: RegistryEntry, model: TFLiteModel | None = None) -> None:
        self.entry = entry
        self.name = entry.name
        self.model = model if model is not None else _load(entry)
        self.use_model = entry.default == "model" and self.model is not None

    def model_output(
        self, features: Sequence[float] | np.ndarray[Any, Any]
    ) -> np.ndarray[Any, Any]:
        if self.model is None:
            raise ModelError(f"{self.name}: no TFLite runtime loaded")
        return self.model.run(features)

    def predict(
        self,
        features: Sequence[float] | np.ndarray[Any, Any],
        reference: float,
        baseline: float,
    ) -> Prediction:
        """Prediction from ``features``; ``reference`` and ``baseline`` in target units."""
        x = check_features(features, len(self.entry.features), self.name)
        model_value = None
        if self.model is not None:
            out = float(self.model.run(x)[0])
            model_value = _transform(self.entry, out, reference)
        if self.use_model and model_value is not None:
            return Prediction(model_value, "model", model_value, baseline)
        return Prediction(baseline, "baseline", model_value, baseline)


class IncidentClassifier:
    """The incident classification model beside its threshold-rule baseline."""

    def __init__(self, entry: RegistryEntry, model: TFLiteModel | None = None) -> None:
        self.entry = entry
        self.name = entry.name
        self.model = model if model is not None else _load(entry)
        self.use_model = entry.default == "model" and self.model is not None

    def classify(
        self, features: Sequence[float] | np.ndarray[Any, Any]
    ) -> ClassPrediction:
        x = check_features(features, len(self.entry.features), self.name)
        baseline = incident_baseline(x.tolist(), **self.entry.baseline_params)
        probabilities = None
        if self.model is not None:
            out = self.model.run(x)
            probabilities = {
                c: float(p) for c, p in zip(self.entry.classes, out, strict=True)
            }
        if self.use_model and probabilities is not None:
            label = max(probabilities, key=lambda c: probabilities[c])
            return ClassPrediction(label, "model", probabilities, baseline)
        return ClassPrediction(baseline, "baseline", probabilities, baseline)


def _transform(entry: RegistryEntry, out: float, reference: float) -> float:
    if entry.output == "add_reference":
        return reference + out
    if entry.output == "ratio_of_reference":
        return reference * (1.0 + out)
    return out


def _load(entry: RegistryEntry) -> TFLiteModel | None:
    try:
        return TFLiteModel(entry.path)
    except ModelError as exc:
        logger.warning("model %s disabled, its baseline is used: %s", entry.name, exc)
        return None


@cache
def load_predictor(name: str) -> Predictor:
    """The registry's regression predictor ``name`` (loaded once per process)."""
    entries = load_registry()
    if name not in entries:
        raise ModelError(f"no model {name!r} in the registry")
    return Predictor(entries[name])


@cache
def load_incident_classifier() -> IncidentClassifier:
    return IncidentClassifier(load_registry()["incident"])


def default_predictor(name: str) -> Predictor | None:
    """The predictor ``name`` where the registry made its model the default, else None."""
    try:
        predictor = load_predictor(name)
    except (ModelError, ValueError) as exc:
        logger.warning("model %s unavailable, baseline used: %s", name, exc)
        return None
    return predictor if predictor.use_model else None
