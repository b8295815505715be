"""The baselines every model must beat: rolling median, last lap, linear fit, threshold rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pitbox_appliance.models.features import INCIDENT_CLASSES, INCIDENT_FEATURES

# Default threshold rules of the incident baseline (features.INCIDENT_FEATURES units);
# `pitbox train` fits them on the training races and stores them in the registry.
CONTACT_DECEL_G = 1.5
SPIN_YAW_RAD = 3.0


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of y on x."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.size < 2 or float(np.ptp(xs)) == 0.0:
        return (float(ys.mean()) if ys.size else 0.0), 0.0
    slope, intercept = np.polyfit(xs, ys, 1)
    return float(intercept), float(slope)


def fatigue_baseline(stint_hours: float, intercept: float, slope: float) -> float:
    """Fatigue level as a straight line in time driven this stint, clipped to 0..1."""
    return min(1.0, max(0.0, intercept + slope * stint_hours))


def incident_baseline(
    features: Sequence[float],
    contact_decel_g: float = CONTACT_DECEL_G,
    spin_yaw_rad: float = SPIN_YAW_RAD,
) -> str:
    """Threshold rules: a hard deceleration is a contact, a near full turn a spin."""
    values = dict(zip(INCIDENT_FEATURES, features, strict=True))
    if values["max_long_decel_g"] >= contact_decel_g:
        return "contact"
    if values["yaw_travel_rad"] >= spin_yaw_rad:
        return "spin"
    return INCIDENT_CLASSES[0]


def fit_incident_thresholds(
    x: np.ndarray[Any, Any], labels: Sequence[str]
) -> dict[str, float]:
    """The two thresholds with the best accuracy on ``x`` (a grid search; ties: first)."""
    best: tuple[float, dict[str, float]] = (-1.0, {})
    for decel in np.arange(0.5, 4.01, 0.1):
        for yaw in np.arange(0.5, 6.51, 0.25):
            params = {"contact_decel_g": float(decel), "spin_yaw_rad": float(yaw)}
            hits = sum(
                incident_baseline(row.tolist(), **params) == label
                for row, label in zip(x, labels, strict=True)
            )
            accuracy = hits / max(1, len(labels))
            if accuracy > best[0]:
                best = (accuracy, params)
    return {k: round(v, 3) for k, v in best[1].items()}
