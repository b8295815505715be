"""Where our car stands among the others: race gaps, cars around on track, closing cars.

Pure functions of a :class:`CarState`: gaps are estimated from lap distance and a
reference lap time (the best lap, else the last), as a spotter would read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pitbox_appliance.dashboard.live_state import CarState, OtherCar

#: A car closer than this on track (metres, at our speed) is alongside.
ALONGSIDE_M = 6.0
#: The spotter lists cars within this many seconds on track.
AROUND_S = 3.0
#: A car behind within this gap that gains at least CLOSING_RATE is "closing".
CLOSING_WITHIN_S = 5.0
CLOSING_RATE = 0.05  # seconds of gap per second


@dataclass(frozen=True, slots=True)
class Neighbour:
    """Another car relative to ours: seconds on track (+ ahead, − behind)."""

    car: OtherCar
    gap_s: float
    alongside: bool


@dataclass(frozen=True, slots=True)
class RaceGaps:
    """Gaps to the cars ahead and behind in the race order (None when unknown)."""

    position: int | None
    ahead: OtherCar | None
    ahead_s: float | None
    behind: OtherCar | None
    behind_s: float | None


def reference_lap_s(car: CarState) -> float | None:
    """The lap time gaps are converted with: best lap, else last lap."""
    for time in (car.best_lap_time, car.last_lap_time):
        if time is not None and time > 0:
            return time
    return None


def track_gap_s(car: CarState, other: OtherCar, lap_s: float) -> float:
    """Seconds between us and ``other`` on track, −lap/2..+lap/2 (+ means ahead)."""
    delta = (other.lap_dist_pct - car.lap_dist_pct + 0.5) % 1.0 - 0.5
    return delta * lap_s


def around(car: CarState, within_s: float = AROUND_S) -> tuple[Neighbour, ...]:
    """Cars near us on track (not in the pit lane), nearest ahead first, then behind."""
    lap_s = reference_lap_s(car)
    if lap_s is None:
        return ()
    out = []
    for other in car.others:
        if other.on_pit_road:
            continue
        gap = track_gap_s(car, other, lap_s)
        if abs(gap) > within_s:
            continue
        metres = abs(gap) * max(car.speed_ms, 1.0)
        out.append(Neighbour(other, gap, metres <= ALONGSIDE_M))
    out.sort(key=lambda n: (n.gap_s < 0, abs(n.gap_s)))
    return tuple(out)


def race_gaps(car: CarState) -> RaceGaps:
    """The cars one position ahead and behind, and the time to them."""
    position = car.position
    if position is None:
        return RaceGaps(None, None, None, None, None)
    by_pos = {o.position: o for o in car.others if o.position > 0}
    ahead, behind = by_pos.get(position - 1), by_pos.get(position + 1)
    return RaceGaps(
        position,
        ahead,
        _race_gap(car, ahead),
        behind,
        _race_gap(car, behind),
    )


def _race_gap(car: CarState, other: OtherCar | None) -> float | None:
    """Seconds to ``other`` by laps run (positive); by track distance without laps."""
    lap_s = reference_lap_s(car)
    if other is None or lap_s is None:
        return None
    if other.lap is not None:
        ours = car.lap + car.lap_dist_pct
        distance = other.lap + other.lap_dist_pct
        return abs(distance - ours) * lap_s
    return abs(track_gap_s(car, other, lap_s))


class ClosingWatch:
    """Remembers each car's gap behind us to tell which ones are closing in."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[float, float]] = {}

    def closing(self, car: CarState) -> tuple[int, ...]:
        """Car indices behind us within CLOSING_WITHIN_S gaining ≥ CLOSING_RATE s/s.

        Call once per new state; the gap of each car is compared with the one it had
        0.5–2 s of session time earlier. A car that gains on track is faster here and
        now, whatever its class; ``faster_class`` tells which of them are another class.
        """
        lap_s = reference_lap_s(car)
        if lap_s is None:
            return ()
        now = car.session_time
        closing = []
        seen: dict[int, tuple[float, float]] = {}
        for other in car.others:
            gap = track_gap_s(car, other, lap_s)
            if other.on_pit_road or not -CLOSING_WITHIN_S <= gap < 0:
                continue
            before = self._seen.get(other.idx)
            seen[other.idx] = before if before and now - before[0] < 2.0 else (now, gap)
            if before is not None and now - before[0] >= 0.5:
                rate = (gap - before[1]) / (now - before[0])  # gap grows towards 0
                if rate >= CLOSING_RATE:
                    closing.append(other.idx)
        self._seen = seen
        return tuple(closing)


def faster_class(
    car: CarState, closing: tuple[int, ...], own: int | None = None
) -> tuple[int, ...]:
    """The closing cars of another class than ours (all of them if ours is unknown).

    ``own`` is our class id from the session info (the live state carries none).
    """
    return tuple(
        o.idx
        for o in car.others
        if o.idx in closing and (own is None or o.class_id != own)
    )
