"""The strategy engine's tunable rules: drive-time limits, tyre-change time, fatigue threshold."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StrategySettings:
    """Defaults are the engine's own choices (docs/strategy.md says why); config overrides.

    Drive times in seconds; ``None`` switches a rule off.
    """

    max_stint_s: float | None = 2 * 3600.0  # longest continuous stint of one driver
    max_total_s: float | None = None  # most drive time of one driver in the race
    min_total_s: float | None = None  # least drive time every listed driver must get
    fatigue_swap: float = 0.7  # swap when live fatigue (0..1) reaches this
    tyre_change_s: float = 12.0  # extra stationary time of a four-tyre change
    fuel_s_per_l: float = 0.0066  # lap time per litre on board (fuel correction)
    default_pit_loss_s: float = 30.0  # until our first stop is timed
    drivers: tuple[str, ...] = ()  # the team's drivers in swap order (else as seen)
