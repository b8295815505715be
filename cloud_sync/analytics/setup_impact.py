"""SetupImpactAnalyzer: CarSetup changes (``car_setup`` events) and the lap-time delta they brought, with a bootstrap CI."""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from cloud_sync.compacted import CompactedSession

SETUP_EVENT = "car_setup"
MIN_LAPS = 3
BOOTSTRAP = 2000
CONFIDENCE = 0.95


@dataclass
class SetupImpact:
    """One setup change for one driver: what changed and what it did to clean lap times."""

    driver: str
    changes: list[dict[str, Any]]
    lap_time_delta_s: float | None  # mean after − mean before (negative: faster)
    uncertainty_s: float | None  # half-width of the 95 % bootstrap interval
    ci_low_s: float | None
    ci_high_s: float | None
    laps_before: int
    laps_after: int
    where: str  # session path where the new setup first ran

    def payload(self) -> dict[str, Any]:
        """The ``setup_impact_analysis`` event payload."""
        return {
            "driver": self.driver,
            "changes": self.changes,
            "lap_time_delta_s": self.lap_time_delta_s,
            "uncertainty_s": self.uncertainty_s,
            "laps_before": self.laps_before,
            "laps_after": self.laps_after,
        }


def setup_diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Every leaf of the CarSetup tree that differs: ``{"path", "before", "after"}``."""
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            out.extend(setup_diff(before.get(key), after.get(key), sub))
        return out
    if before == after:
        return []
    return [{"path": path, "before": _plain(before), "after": _plain(after)}]


def _plain(value: Any) -> Any:
    return (
        value
        if isinstance(value, (str, int, float, bool)) or value is None
        else str(value)
    )


class SetupImpactAnalyzer:
    """Setup segments over sessions of one car (in time order) and the delta at each change.

    Laps belong to the setup last seen before they started; a session with no
    ``car_setup`` event carries no setup information and is left out. The delta is
    the difference of mean clean lap times per driver (same driver both sides), with a
    percentile bootstrap interval (2000 resamples, fixed seed). Fewer than three clean
    laps on a side give no delta. Track evolution, fuel load and tyre age are **not**
    controlled for: the uncertainty covers lap-to-lap noise only.
    """

    def __init__(self, sessions: list[CompactedSession], seed: int = 7) -> None:
        self.sessions = sessions
        self.rng = np.random.default_rng(seed)

    def segments(self) -> list[tuple[dict[str, Any], str, dict[str, list[float]]]]:
        """(setup, session path, clean lap times per driver) in order; equal setups merge."""
        out: list[tuple[dict[str, Any], str, dict[str, list[float]]]] = []
        for session in self.sessions:
            changes = sorted(
                session.events_of(SETUP_EVENT), key=lambda e: e.session_time
            )
            changes = [e for e in changes if isinstance(e.payload.get("setup"), dict)]
            if not changes:
                continue
            for i, event in enumerate(changes):
                until = changes[i + 1].session_time if i + 1 < len(changes) else None
                laps: dict[str, list[float]] = {}
                for lap in session.laps:
                    if not lap.clean or lap.start_time is None or lap.lap_time is None:
                        continue
                    if lap.start_time < event.session_time:
                        continue
                    if until is not None and lap.start_time >= until:
                        continue
                    laps.setdefault(lap.driver, []).append(lap.lap_time)
                setup = event.payload["setup"]
                if out and out[-1][0] == setup:
                    for driver, times in laps.items():
                        out[-1][2].setdefault(driver, []).extend(times)
                else:
                    out.append((setup, session.path, laps))
        return out

    def impacts(self) -> list[SetupImpact]:
        segs = self.segments()
        out = []
        for (before, _, laps_a), (after, where, laps_b) in itertools.pairwise(segs):
            changes = setup_diff(before, after)
            for driver in sorted(set(laps_a) & set(laps_b)) or sorted(laps_b):
                a, b = laps_a.get(driver, []), laps_b.get(driver, [])
                delta = low = high = half = None
                if len(a) >= MIN_LAPS and len(b) >= MIN_LAPS:
                    delta = statistics.fmean(b) - statistics.fmean(a)
                    low, high = self._bootstrap(a, b)
                    half = (high - low) / 2
                out.append(
                    SetupImpact(
                        driver, changes, delta, half, low, high, len(a), len(b), where
                    )
                )
        return out

    def _bootstrap(self, a: list[float], b: list[float]) -> tuple[float, float]:
        xa, xb = np.asarray(a), np.asarray(b)
        ia = self.rng.integers(0, len(xa), (BOOTSTRAP, len(xa)))
        ib = self.rng.integers(0, len(xb), (BOOTSTRAP, len(xb)))
        deltas = xb[ib].mean(axis=1) - xa[ia].mean(axis=1)
        tail = (1 - CONFIDENCE) / 2 * 100
        low, high = np.percentile(deltas, [tail, 100 - tail])
        return float(low), float(high)
