"""Finds the team car's incident sequences in telemetry and classifies each one.

A sequence is a run of rises of ``PlayerCarMyIncidentCount`` less than
``SEQUENCE_GAP_S`` apart (iRacing counts an escalating incident in steps up to its
worst stage); its telemetry window runs from 1 s before the first rise to 4 s after
the last, the window the incident model was trained on (models/datasets.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pitbox_appliance.models.features import incident_features
from pitbox_appliance.models.predictors import (
    IncidentClassifier,
    load_incident_classifier,
)

SEQUENCE_GAP_S = 6.0
WINDOW_BEFORE_S = 1.0
WINDOW_AFTER_S = 4.0
WINDOW_CHANNELS = (
    "SessionTime",
    "Speed",
    "LongAccel",
    "LatAccel",
    "Yaw",
    "SteeringWheelAngle",
)
COUNT_CHANNEL = "PlayerCarMyIncidentCount"


@dataclass(frozen=True, slots=True)
class ClassifiedIncident:
    """One incident sequence: when, the points it added, and its classification."""

    start_s: float
    end_s: float
    points: int
    label: str
    source: str
    baseline_label: str
    probabilities: dict[str, float] | None


def incident_sequences(
    time_s: np.ndarray[Any, Any], count: np.ndarray[Any, Any]
) -> list[tuple[float, float, int]]:
    """``(first rise, last rise, points)`` of each sequence; drops (a new driver) ignored."""
    rises = np.flatnonzero(np.diff(count.astype(np.int64)) > 0) + 1
    sequences: list[tuple[float, float, int]] = []
    for index in rises:
        at = float(time_s[index])
        points = int(count[index]) - int(count[index - 1])
        if sequences and at - sequences[-1][1] < SEQUENCE_GAP_S:
            first, _, total = sequences[-1]
            sequences[-1] = (first, at, total + points)
        else:
            sequences.append((at, at, points))
    return sequences


def classify_incidents(
    frames: np.ndarray[Any, np.dtype[np.void]],
    classifier: IncidentClassifier | None = None,
) -> list[ClassifiedIncident]:
    """Every incident sequence in ``frames`` (one car's consecutive ticks), classified.

    Raises ValueError naming the missing channels when the frames lack any of them.
    """
    names = frames.dtype.names or ()
    missing = [c for c in (*WINDOW_CHANNELS, COUNT_CHANNEL) if c not in names]
    if missing:
        raise ValueError(f"incident classification needs channels {missing}")
    classifier = classifier or load_incident_classifier()
    time_s = np.asarray(frames["SessionTime"], dtype=np.float64)
    columns = [np.asarray(frames[c], dtype=np.float64) for c in WINDOW_CHANNELS]
    found = []
    for first, last, points in incident_sequences(time_s, frames[COUNT_CHANNEL]):
        window = (time_s >= first - WINDOW_BEFORE_S) & (time_s <= last + WINDOW_AFTER_S)
        if window.sum() < 2:
            continue
        x = incident_features(*(column[window] for column in columns))
        result = classifier.classify(x)
        found.append(
            ClassifiedIncident(
                first,
                last,
                points,
                result.label,
                result.source,
                result.baseline_label,
                result.probabilities,
            )
        )
    return found
