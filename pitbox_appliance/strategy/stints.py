"""Splits each car's timing into stints and pit stops, and classifies stops by duration."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from pitbox_appliance.strategy.timing import TimingLap, TrackFlag, laps_by_car

# Thresholds on a stop's *excess*: its pit-lane time minus the race's pit-lane transit
# time (the shortest passage of the race; track dependent). Read from the 721 stops
# of the three IMSA races in ../shared/data/imsa (bench/accuracy.py prints the
# distribution; docs/strategy.md): 34 passages lie within 1.6 s of the transit time
# and the next is 3.6 s above it; a sparse group of 14 stops ends at 12.9 s, then an
# empty 1 s band before the main mass of service stops; 90 s is the Tukey far-out
# fence (Q3 + 3 IQR = 42.0 + 3 x 16.1 s) of the same-driver service stops.
DRIVE_THROUGH_MAX_EXCESS_S = 2.0
SPLASH_MAX_EXCESS_S = 13.0
LONG_STOP_MIN_EXCESS_S = 90.0
# The shortest passage is the transit time only if it is well under the median pit
# time (0.40-0.46 of it in the three races; no service stop is under 0.66).
# Otherwise nobody drove through and the transit time is unknown.
TRANSIT_MAX_SHARE_OF_MEDIAN = 0.6


class StopKind(StrEnum):
    """What a pit stop was, as far as its duration tells."""

    DRIVE_THROUGH = "drive_through"  # through the pit lane without stopping
    SPLASH = "splash"  # a few seconds stationary: fuel splash or a quick check
    SERVICE = "service"  # refuel, maybe tyres (duration cannot tell which)
    LONG = "long"  # repair, stop-and-hold penalty or red-flag hold


@dataclass(frozen=True, slots=True)
class PitStop:
    """One visit to the pit lane that the timing gave a pit time for.

    ``in_lap`` is the lap that ended in the pit lane, ``out_lap`` the lap that carries
    the pit time (Al Kamel reports it there). ``flagged_in_pit`` says whether the
    timing also flagged the in-lap as ending in the pit lane (``B``).
    """

    car: str
    in_lap: int
    out_lap: int
    pit_time_s: float
    driver_before: str
    driver_after: str
    in_lap_flag: TrackFlag
    flagged_in_pit: bool
    kind: StopKind

    @property
    def driver_change(self) -> bool:
        return self.driver_before != self.driver_after


@dataclass(frozen=True, slots=True)
class Stint:
    """Laps run between two stops (the in-lap belongs to the stint it ends)."""

    car: str
    number: int
    first_lap: int
    last_lap: int
    drivers: tuple[str, ...]
    green_laps: int
    neutralised_laps: int
    ended_by_stop: bool

    @property
    def laps(self) -> int:
        return self.last_lap - self.first_lap + 1


@dataclass(frozen=True, slots=True)
class CarAnalysis:
    """Stints, stops and driver changes of one car."""

    car: str
    car_class: str
    team: str
    laps: tuple[TimingLap, ...]
    stints: tuple[Stint, ...]
    stops: tuple[PitStop, ...]
    pit_lane_start: bool

    @property
    def driver_changes(self) -> tuple[PitStop, ...]:
        return tuple(stop for stop in self.stops if stop.driver_change)

    def stint_of_lap(self) -> dict[int, int]:
        """Stint number of every lap."""
        return {
            lap: stint.number
            for stint in self.stints
            for lap in range(stint.first_lap, stint.last_lap + 1)
        }


def analyse_race(laps: Iterable[TimingLap]) -> dict[str, CarAnalysis]:
    """Every car's analysis; stops are classified against the race's transit time."""
    cars = laps_by_car(laps)
    pit_times = [
        lap.pit_time_s
        for car_laps in cars.values()
        for lap in car_laps[1:]
        if lap.pit_time_s is not None
    ]
    transit_s = transit_time(pit_times)
    return {car: analyse_car(car_laps, transit_s) for car, car_laps in cars.items()}


def analyse_car(laps: Sequence[TimingLap], transit_s: float | None) -> CarAnalysis:
    """Stints and stops of one car's laps (in lap order).

    A stop is found from the pit time alone: the lap carrying it is the out-lap and
    the lap before it the in-lap. A pit time on the car's first lap means it started
    from the pit lane, which is no stop. Without a transit time every stop is
    classified ``SERVICE``.
    """
    if not laps:
        raise ValueError("no laps")
    ordered = sorted(laps, key=lambda lap: lap.lap)
    stops: list[PitStop] = []
    for before, after in itertools.pairwise(ordered):
        if after.pit_time_s is None:
            continue
        stops.append(
            PitStop(
                car=after.car,
                in_lap=before.lap,
                out_lap=after.lap,
                pit_time_s=after.pit_time_s,
                driver_before=before.driver,
                driver_after=after.driver,
                in_lap_flag=before.flag,
                flagged_in_pit=before.in_pit,
                kind=classify_stop(after.pit_time_s, transit_s),
            )
        )
    stints: list[Stint] = []
    first = 0
    stop_in_laps = {stop.in_lap for stop in stops}
    for index, lap in enumerate(ordered):
        if lap.lap in stop_in_laps or index == len(ordered) - 1:
            stint_laps = ordered[first : index + 1]
            stints.append(
                Stint(
                    car=lap.car,
                    number=len(stints) + 1,
                    first_lap=stint_laps[0].lap,
                    last_lap=lap.lap,
                    drivers=tuple(dict.fromkeys(x.driver for x in stint_laps)),
                    green_laps=sum(1 for x in stint_laps if x.is_green),
                    neutralised_laps=sum(1 for x in stint_laps if x.is_neutralised),
                    ended_by_stop=lap.lap in stop_in_laps,
                )
            )
            first = index + 1
    return CarAnalysis(
        car=ordered[0].car,
        car_class=ordered[0].car_class,
        team=ordered[0].team,
        laps=tuple(ordered),
        stints=tuple(stints),
        stops=tuple(stops),
        pit_lane_start=ordered[0].pit_time_s is not None,
    )


def transit_time(pit_times: Iterable[float]) -> float | None:
    """Time to drive through the pit lane without stopping: the shortest passage.

    ``None`` when there are no pit times or the shortest is not clearly shorter
    than a typical stop (then nobody drove through, and the transit is unknown).
    """
    ordered = sorted(pit_times)
    if not ordered:
        return None
    shortest = ordered[0]
    if shortest > TRANSIT_MAX_SHARE_OF_MEDIAN * statistics.median(ordered):
        return None
    return shortest


def classify_stop(pit_time_s: float, transit_s: float | None) -> StopKind:
    """Kind of a stop from its pit-lane time and the race's transit time."""
    if transit_s is None:
        return StopKind.SERVICE
    excess = pit_time_s - transit_s
    if excess <= DRIVE_THROUGH_MAX_EXCESS_S:
        return StopKind.DRIVE_THROUGH
    if excess < SPLASH_MAX_EXCESS_S:
        return StopKind.SPLASH
    if excess >= LONG_STOP_MIN_EXCESS_S:
        return StopKind.LONG
    return StopKind.SERVICE
