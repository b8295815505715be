"""Pit loss learned from our own stops: pit-lane and stationary time against a green lap."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any

from pitbox_appliance.strategy.fuel import LapFuel, green_fuel_laps

# Used until our first stop has been timed (seconds a stop costs against a green lap).
DEFAULT_PIT_LOSS_S = 30.0
# Stationary time of a stop that only refuels, beyond the fuel flow (jacks, hose on/off).
DEFAULT_SERVICE_BASE_S = 4.0


@dataclass(slots=True)
class OurStop:
    """One of our stops as the telemetry showed it (times on the SessionTime clock)."""

    entry_time: float
    exit_time: float | None = None
    lap: int = 0
    stationary_s: float = 0.0
    fuel_added_l: float = 0.0
    tyres: bool | None = None  # tyre wear read back as new after the stop
    repair: bool = False  # repair time was left when the car came in

    @property
    def pit_road_s(self) -> float | None:
        return None if self.exit_time is None else self.exit_time - self.entry_time


@dataclass(frozen=True, slots=True)
class PitLoss:
    """What a stop costs; ``s`` is the figure every plan uses (see docs/strategy.md)."""

    s: float
    drive_through_s: float | None
    stationary_s: float | None
    stops_used: int
    source: str
    transit_s: float | None = None  # pit-road time less stationary time
    fill_rate_lps: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            k: round(v, 2) if isinstance(v, float) else v
            for k, v in asdict(self).items()
        }


def stop_lap_groups(laps: list[LapFuel]) -> list[list[LapFuel]]:
    """Runs of consecutive pit laps (in-lap and out-lap of each stop), oldest first."""
    groups: list[list[LapFuel]] = []
    prev: LapFuel | None = None
    for lap in laps:
        if lap.pit:
            if prev is not None and prev.pit and prev.lap == lap.lap - 1 and groups:
                groups[-1].append(lap)
            else:
                groups.append([lap])
        prev = lap
    return groups


def learn_pit_loss(
    laps: list[LapFuel],
    stops: list[OurStop],
    default_s: float = DEFAULT_PIT_LOSS_S,
) -> PitLoss:
    """Median loss of our completed, timed stops; ``default_s`` until there is one.

    A stop's loss is the time of its pit laps (in-lap and out-lap) less as many green
    laps (the median green racing lap); stops with a yellow pit lap are left out. The drive-through part is that loss less the
    stationary time measured on pit road, so a planned stop can be priced as
    drive-through + its own service time.
    """
    green = green_fuel_laps(laps)
    done = [s for s in stops if s.exit_time is not None]
    if not green or not done:
        return PitLoss(default_s, None, None, 0, "default")
    green_lap = statistics.median(lap.lap_time for lap in green if lap.lap_time)
    # The stop's pit laps are complete once a non-pit lap followed them.
    groups = [g for g in stop_lap_groups(laps) if g[-1].lap < laps[-1].lap]
    losses: list[float] = []
    drive: list[float] = []
    stationary: list[float] = []
    for stop, group in zip(done, groups, strict=False):
        times = [lap.lap_time for lap in group]
        # A stop under yellow is compared with a green lap it never had to beat.
        if any(t is None for t in times) or any(lap.yellow for lap in group):
            continue
        loss = sum(t for t in times if t is not None) - len(group) * green_lap
        losses.append(loss)
        drive.append(loss - stop.stationary_s)
        stationary.append(stop.stationary_s)
    if not losses:
        return PitLoss(default_s, None, None, 0, "default")
    # The fastest fill seen is the pump: slower ones were held by tyres or repairs.
    transits = [s.pit_road_s - s.stationary_s for s in done if s.pit_road_s is not None]
    rates = [
        s.fuel_added_l / max(1e-6, s.stationary_s - DEFAULT_SERVICE_BASE_S)
        for s in done
        if s.fuel_added_l > 1.0
        and s.stationary_s > DEFAULT_SERVICE_BASE_S + 1.0
        and not s.repair
        and not s.tyres
    ]
    return PitLoss(
        statistics.median(losses),
        statistics.median(drive),
        statistics.median(stationary),
        len(losses),
        "learned",
        statistics.median(transits) if transits else None,
        max(rates) if rates else None,
    )
