"""Tyre-change advice from degradation: fuel-corrected lap-time trend over the age of the set."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

MIN_LAPS_FOR_TREND = 10
# Hysteresis: advice turns to change above 1.1 × the cost, back to keep below 0.9 ×.
HYSTERESIS = 0.1
TREND_WINDOW = 40  # newest racing laps of the set used for the slope


@dataclass(frozen=True, slots=True)
class TyreLap:
    """A racing lap on the current set: its age in laps, time and fuel on board at its start."""

    age: int
    lap_time: float
    fuel_l: float | None


@dataclass(frozen=True, slots=True)
class TyreAdvice:
    """See docs/strategy.md, ``tyres``."""

    advice: str | None
    tyre_age_laps: int
    loss_per_lap_s: float | None
    next_stint_laps: int | None
    loss_next_stint_s: float | None
    change_time_s: float
    basis: str

    def as_dict(self) -> dict[str, Any]:
        return {
            k: round(v, 4) if isinstance(v, float) else v
            for k, v in asdict(self).items()
        }


def degradation_slope(laps: list[TyreLap], fuel_s_per_l: float) -> float | None:
    """Seconds per lap of tyre age (Theil–Sen), lap times corrected to an empty tank."""
    laps = laps[-TREND_WINDOW:]
    if len(laps) < MIN_LAPS_FOR_TREND:
        return None
    pts = [(lap.age, lap.lap_time - fuel_s_per_l * (lap.fuel_l or 0.0)) for lap in laps]
    slopes = [
        (b[1] - a[1]) / (b[0] - a[0])
        for i, a in enumerate(pts)
        for b in pts[i + 1 :]
        if b[0] != a[0]
    ]
    return statistics.median(slopes) if slopes else None


def tyre_advice(
    laps: list[TyreLap],
    tyre_age: int,
    next_stint_laps: int | None,
    change_time_s: float,
    fuel_s_per_l: float,
    previous: str | None = None,
) -> TyreAdvice:
    """Change when the next stint on these tyres loses more than the change costs.

    With a linear loss of ``slope`` s per lap of age, running the next N laps on a set
    that is ``age`` laps old instead of a new one costs ``slope × age × N`` seconds;
    the change costs ``change_time_s`` of extra stationary time.
    """
    slope = degradation_slope(laps, fuel_s_per_l)
    if slope is None or next_stint_laps is None or next_stint_laps <= 0:
        why = (
            f"need {MIN_LAPS_FOR_TREND} racing laps on this set"
            if slope is None
            else "no further stint"
        )
        return TyreAdvice(
            None, tyre_age, slope, next_stint_laps, None, change_time_s, why
        )
    loss = max(0.0, slope) * tyre_age * next_stint_laps
    factor = 1.0 - HYSTERESIS if previous == "change" else 1.0 + HYSTERESIS
    change = loss > change_time_s * factor
    basis = (
        f"{slope:+.3f} s/lap of tyre age × {tyre_age} laps old × {next_stint_laps} laps "
        f"= {loss:.1f} s {'>' if change else '≤'} change {change_time_s:.1f} s"
    )
    return TyreAdvice(
        "change" if change else "keep",
        tyre_age,
        slope,
        next_stint_laps,
        loss,
        change_time_s,
        basis,
    )
