"""Race length live: laps and time left in lap and timed races, whichever ends first, and laps down."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from pitbox_appliance.strategy.fuel import RaceLength


@dataclass(frozen=True, slots=True)
class RaceState:
    """How much race is left for our car (see docs/strategy.md, ``race``)."""

    kind: str
    laps_total: int | None
    seconds_total: float | None
    time_left_s: float | None
    leader_lap: int | None
    laps_down: int
    laps_left: int | None
    ends_by: str | None
    basis: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def race_kind(race: RaceLength) -> str:
    """``laps``, ``timed``, ``laps_or_time`` (both set) or ``unknown``."""
    if race.laps is not None and race.seconds is not None:
        return "laps_or_time"
    if race.laps is not None:
        return "laps"
    return "timed" if race.seconds is not None else "unknown"


def race_state(
    race: RaceLength,
    our_progress: float,
    leader_progress: float | None,
    elapsed_s: float | None,
    our_lap_time: float | None,
    leader_lap_time: float | None,
    time_left_s: float | None = None,
) -> RaceState:
    """Laps we still complete before the flag.

    ``*_progress`` is laps completed plus the fraction of the current lap (CarIdxLap − 1
    + CarIdxLapDistPct). The overall leader takes the flag: in a lap race when it
    completes ``race.laps``; in a timed race at its first line crossing after the clock
    ran out. We finish at our first crossing after the leader has finished, so a car
    laps down runs fewer laps. ``time_left_s`` (SessionTimeRemain) wins over
    ``race.seconds − elapsed_s`` where the feed has it.
    """
    kind = race_kind(race)
    leader = (
        our_progress if leader_progress is None else max(leader_progress, our_progress)
    )
    leader_pace = leader_lap_time or our_lap_time
    laps_down = max(0, math.floor(leader - our_progress))
    if time_left_s is None and race.seconds is not None and elapsed_s is not None:
        time_left_s = max(0.0, race.seconds - elapsed_s)
    # Time until the leader takes the flag, by each limit.
    until: dict[str, float] = {}
    leader_laps_left: dict[str, float] = {}
    if race.laps is not None:
        leader_laps_left["laps"] = max(0.0, race.laps - leader)
    if time_left_s is not None and leader_pace:
        crossing = math.floor(leader + time_left_s / leader_pace) + 1
        leader_laps_left["time"] = max(0.0, crossing - leader)
    if leader_pace:
        until = {k: v * leader_pace for k, v in leader_laps_left.items()}
    completed = math.floor(our_progress)
    laps_left: int | None = None
    ends_by: str | None = None
    basis = "race length unknown"
    if until and our_lap_time:
        ends_by = min(until, key=lambda k: until[k])
        at_flag = our_progress + until[ends_by] / our_lap_time
        if leader <= our_progress:
            # We are the leader: we finish exactly when the leader does.
            at_flag = our_progress + leader_laps_left[ends_by]
        # Our first crossing at or after the leader's flag (at the line with the flag
        # already out, this crossing was our last).
        finish = math.ceil(at_flag - 1e-9)
        laps_left = max(0, finish - completed)
        basis = (
            f"{'timed' if ends_by == 'time' else 'lap'} race ends first by {ends_by}: "
            f"leader {leader_laps_left[ends_by]:.1f} laps left at {leader_pace:.2f} s/lap, "
            f"we are {laps_down} lap{'s' if laps_down != 1 else ''} down"
        )
    elif race.laps is not None:
        laps_left = max(0, race.laps - completed - laps_down)
        ends_by = "laps"
        basis = f"lap race, no pace yet: {race.laps} laps less {laps_down} down"
    return RaceState(
        kind,
        race.laps,
        race.seconds,
        None if time_left_s is None else round(time_left_s, 1),
        None if leader_progress is None else math.floor(leader) + 1,
        laps_down,
        laps_left,
        ends_by,
        basis,
    )
